"""qc2c: Quantized Cache-to-Cache — compress the sharer KV message of C2C and measure what it costs."""
