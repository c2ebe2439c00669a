"""Export destination: scheduled dataset files with manifests for an isolation zone (隔离区)."""
