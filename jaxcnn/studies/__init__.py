"""jaxcnn.studies."""
