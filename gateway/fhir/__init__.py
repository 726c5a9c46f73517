"""FHIR side of the gateway: ImagingStudy mapping, versioned storage, the /fhir REST API and push to an EHR."""
