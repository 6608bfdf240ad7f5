"""jaxcnn.nn."""
