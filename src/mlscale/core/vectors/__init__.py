"""The vector store's pure half: collection specs, filters, SQL, the exact top-k merge."""
