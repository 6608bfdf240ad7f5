"""jaxcnn.search."""
