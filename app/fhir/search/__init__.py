"""FHIR search: parameter registry, index extraction and index tables."""
