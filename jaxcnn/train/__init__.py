"""jaxcnn.train."""
