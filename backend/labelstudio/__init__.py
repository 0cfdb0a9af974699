"""Label Studio glue: label config parsing, result converters, brush RLE, image fetching, API auth."""
