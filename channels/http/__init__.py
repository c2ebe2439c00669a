"""HTTP connector: inbound (HL7 v2 over HTTP and FHIR REST), auth, responses, outbound HTTP and FHIR."""
