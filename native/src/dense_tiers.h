/* dense_tiers.h — the block loops of the Q4_0 and q2/q3_g64 row decoders (FORMAT.md §10), shared by the SIMD
 * variants: each dense_<variant>.c defines, before including it, store16(out, codes, d, m, offset, has_m) (16 codes
 * to floats), q4_0_codes(qs, h) and g64_codes(qs, qh, s) (16 codes as its byte vector) and half_at(p). */
#ifndef PBS2P_DENSE_TIERS_H
#define PBS2P_DENSE_TIERS_H

/* Row r of a Q4_0 / q2_g64 / q3_g64 matrix into out; 0 for another type (the caller decodes it). */
static int decode_tier_row(const pbs2p_dense *W, const uint8_t *p, float *out) {
    const int32_t K = W->cols;
    if (W->type == PBS2P_GGML_Q4_0) {
        for (int32_t b = 0; b < K / PBS2P_Q4_0_BLOCK; b++, p += PBS2P_Q4_0_BYTES)
            for (int h = 0; h < 2; h++) store16(out + 32 * b + 16 * h, q4_0_codes(p + 2, h), half_at(p), 0.0f, 8, 0);
        return 1;
    }
    if (W->type == PBS2P_DENSE_Q2_G64 || W->type == PBS2P_DENSE_Q3_G64) {
        const int q3 = W->type == PBS2P_DENSE_Q3_G64;
        const size_t bytes = q3 ? PBS2P_Q3_G64_BYTES : PBS2P_Q2_G64_BYTES;
        for (int32_t b = 0; b < K / PBS2P_G64_BLOCK; b++, p += bytes)
            for (int s = 0; s < 4; s++)
                store16(out + 64 * b + 16 * s, g64_codes(p + 4, q3 ? p + 20 : NULL, s), half_at(p), half_at(p + 2), 0, 1);
        return 1;
    }
    return 0;
}

#endif
