/* qdense_lanes.h — the loops around the integer dense products that take rows as vector lanes (qdense_avx512.c,
 * qdense_lanes_avx2.c, qdense_dotprod_neon.c): rows in groups of ROWS, tokens in passes of TOKENS, and one
 * always-inlined copy of the product per block type (with the type a constant, each copy drops the others' code).
 * Each file defines, before including it:
 *   ROWS, TOKENS                                      rows per vector, tokens per pass over a group of rows
 *   group_tokens(type, W, A, t0, nt, Y, ldy, r, n)    rows r .. r + n - 1 (n <= ROWS), tokens t0 .. t0 + nt - 1
 *                                                     (nt <= TOKENS), always-inlined
 * and calls lanes_rows from its pbs2p_qdense_fn. */
#ifndef PBS2P_QDENSE_LANES_H
#define PBS2P_QDENSE_LANES_H

static inline __attribute__((always_inline)) void lanes_rows_of(int32_t type, const pbs2p_dense *W,
                                                                const pbs2p_q8_acts *A, size_t n_tokens, float *Y,
                                                                size_t ldy, int32_t row0, int32_t row1) {
    for (int32_t r = row0; r < row1; r += ROWS) {
        const int n = row1 - r < ROWS ? row1 - r : ROWS;
        for (size_t t = 0; t < n_tokens; t += TOKENS)
            group_tokens(type, W, A, t, n_tokens - t < TOKENS ? (int)(n_tokens - t) : TOKENS, Y, ldy, r, n);
    }
}

static void lanes_rows(const pbs2p_dense *W, const pbs2p_q8_acts *A, size_t n_tokens, float *Y, size_t ldy,
                       int32_t row0, int32_t row1) {
    switch (W->type) {
    case PBS2P_GGML_Q8_0: lanes_rows_of(PBS2P_GGML_Q8_0, W, A, n_tokens, Y, ldy, row0, row1); break;
    case PBS2P_GGML_Q4_0: lanes_rows_of(PBS2P_GGML_Q4_0, W, A, n_tokens, Y, ldy, row0, row1); break;
    case PBS2P_DENSE_Q3_G64: lanes_rows_of(PBS2P_DENSE_Q3_G64, W, A, n_tokens, Y, ldy, row0, row1); break;
    case PBS2P_DENSE_Q2_S16: lanes_rows_of(PBS2P_DENSE_Q2_S16, W, A, n_tokens, Y, ldy, row0, row1); break;
    case PBS2P_DENSE_Q3_S16: lanes_rows_of(PBS2P_DENSE_Q3_S16, W, A, n_tokens, Y, ldy, row0, row1); break;
    case PBS2P_DENSE_Q4_S16: lanes_rows_of(PBS2P_DENSE_Q4_S16, W, A, n_tokens, Y, ldy, row0, row1); break;
    default: lanes_rows_of(PBS2P_DENSE_Q2_G64, W, A, n_tokens, Y, ldy, row0, row1);
    }
}

#endif
