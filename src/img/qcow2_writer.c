/* Streaming qcow2 writer for convert (being written). */
