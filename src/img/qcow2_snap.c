/* Internal snapshot table (being written). */
