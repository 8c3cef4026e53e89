"""Pure tensor math of compression: masks, binarizers, GPTQ compensation, SPBO, CFS. No I/O, no hooks."""
