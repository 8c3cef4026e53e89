/* qdense_avx512.c — AVX-512 VNNI integer dense products (internal.h: "integer dense products"), prompts and decoding:
 * the lanes of a vector are sixteen rows, not sixteen columns. For one activation block b, vector j holds weight codes
 * 4j .. 4j + 3 of block b of each of the sixteen rows (gathered: one 32-bit load per row), so eight vpdpbusd against
 * the token's activation codes 4j .. 4j + 3 (broadcast) leave each row's exact integer dot I_b in its own lane: no
 * horizontal sums. The weight codes of a block are gathered once for up to TOKENS tokens; each token keeps the
 * reference's eight sums acc[b % 8] per row, sixteen rows a vector, and the term of block b goes to acc[b % 8] in
 * block order, so every output has the reference's bits; our two-level blocks add T_b to acc and the min term to a
 * second set accZ, and apply the rows' D and M once at the end (qdense_ref.c's s16_row). Built with -ffp-contract=off.
 *
 * vpdpbusd multiplies unsigned by signed bytes: the codes of Q4_0 and of our blocks of 64 are unsigned; Q8_0's signed
 * codes w go in as w + 128 (w ^ 0x80) and 128 * (code sum of the activation block) comes off the integer dot, which
 * is exact (|sum| <= 32 * 255 * 127). Decoding (one token) gains too: 172-178 against the AVX2 kernel's 131-152 tok/s
 * on the default export (Sapphire Rapids, 2 threads). */
#include "internal.h"

#ifdef PBS2P_HAVE_AVX512_VNNI
#include <immintrin.h>

#define ROWS 16            /* rows per vector */
#define TOKENS 16          /* tokens per pass over a group of rows: its codes are gathered once for them */
#define INLINE static inline __attribute__((always_inline))

/* One activation block of sixteen rows: codes as bytes for vpdpbusd (w[j]: codes 4j .. 4j + 3 of each row, unsigned;
 * Q8_0's biased by 128), the scales dw and (our blocks of 64) the mins mw. Rows outside the group's mask read nothing
 * and hold code 0 and scale 0. */
typedef struct block_codes {
    __m512i w[8];
    __m512 dw, mw;
    __m512 mc0, mc1; /* our two-level blocks: the min codes mc[2h], mc[2h + 1] as floats (w holds sc * code) */
} block_codes;

INLINE __m512i gather(__mmask16 rows, __m512i at, const uint8_t *base) {
    return _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), rows, at, base, 1);
}

/* The float16 in the low (high = 0) or high (1) half of each 32-bit lane, as float32. */
INLINE __m512 half_lanes(__m512i v, int high) {
    return _mm512_cvtph_ps(_mm512_cvtepi32_epi16(high ? _mm512_srli_epi32(v, 16) : v));
}

/* Our two-level blocks: the codes of sub-block 2h (w[0..3]) times its scale code sc, those of 2h + 1 (w[4..7]) times
 * theirs, so that one integer dot is qdense_ref.c's T (sc * code <= 225: an unsigned byte, and each 16-bit multiply
 * of two codes by sc stays in its bytes); the min codes as floats. sc4 holds each row's sc[4] (lane k: row k). */
INLINE block_codes scale_sub_blocks(block_codes c, __m512i sc4, int h) {
    const __m512i sub = _mm512_srli_epi32(sc4, 16 * h), nib = _mm512_set1_epi32(15); /* sc[2h] | sc[2h + 1] << 8 */
    const __m512i sc0 = _mm512_and_si512(sub, nib), sc1 = _mm512_and_si512(_mm512_srli_epi32(sub, 8), nib);
    const __m512i m0 = _mm512_or_si512(sc0, _mm512_slli_epi32(sc0, 16)), m1 = _mm512_or_si512(sc1, _mm512_slli_epi32(sc1, 16));
    for (int j = 0; j < 4; j++) {
        c.w[j] = _mm512_mullo_epi16(c.w[j], m0);
        c.w[j + 4] = _mm512_mullo_epi16(c.w[j + 4], m1);
    }
    c.mc0 = _mm512_cvtepi32_ps(_mm512_and_si512(_mm512_srli_epi32(sub, 4), nib));
    c.mc1 = _mm512_cvtepi32_ps(_mm512_and_si512(_mm512_srli_epi32(sub, 12), nib));
    return c;
}

/* Activation block b of the rows at `rows` (row k at base + at[k], k in mask). */
INLINE block_codes gather_block(int32_t type, const uint8_t *base, __m512i at, __mmask16 rows, int32_t b) {
    block_codes c;
    const __m512i low2 = _mm512_set1_epi8(3), nibble = _mm512_set1_epi8(15);
    if (type == PBS2P_GGML_Q8_0) {
        const uint8_t *p = base + (size_t)b * PBS2P_Q8_0_BYTES;
        for (int j = 0; j < 8; j++)
            c.w[j] = _mm512_xor_si512(gather(rows, at, p + 2 + 4 * j), _mm512_set1_epi8((char)0x80));
        c.dw = half_lanes(gather(rows, at, p), 0);
        c.mw = c.dw;
        return c;
    }
    if (type == PBS2P_GGML_Q4_0) { /* codes 4j.. of the low nibbles (j < 4), then of the high nibbles */
        const uint8_t *p = base + (size_t)b * PBS2P_Q4_0_BYTES;
        for (int j = 0; j < 4; j++) {
            const __m512i qs = gather(rows, at, p + 2 + 4 * j);
            c.w[j] = _mm512_and_si512(qs, nibble);
            c.w[j + 4] = _mm512_and_si512(_mm512_srli_epi32(qs, 4), nibble); /* the mask drops what crosses a byte */
        }
        c.dw = half_lanes(gather(rows, at, p), 0);
        c.mw = c.dw;
        return c;
    }
    /* our blocks of 64: activation block b is half h of weight block b / 2, codes 32h + 16(s - 2h) + i with s = 2h
     * (j < 4) and 2h + 1, i = 4(j % 4) .. 4(j % 4) + 3: bits 2s of qs[i]; q3's bit 2 is bit 32h + 4j + k of qh. The
     * two-level blocks hold their codes at the same places after the row's header (q4_s16's as two Q4_0 blocks' qs) */
    const int q3 = type == PBS2P_DENSE_Q3_G64 || type == PBS2P_DENSE_Q3_S16, h = b % 2;
    const uint8_t *p = base + pbs2p_our_block_at(type, (size_t)(b / 2));
    if (type == PBS2P_DENSE_Q4_S16) {
        for (int j = 0; j < 4; j++) {
            const __m512i qs = gather(rows, at, p + 4 + 16 * h + 4 * j);
            c.w[j] = _mm512_and_si512(qs, nibble);
            c.w[j + 4] = _mm512_and_si512(_mm512_srli_epi32(qs, 4), nibble);
        }
        return scale_sub_blocks(c, gather(rows, at, p), h);
    }
    for (int i = 0; i < 4; i++) {
        const __m512i qs = gather(rows, at, p + 4 + 4 * i);
        c.w[i] = _mm512_and_si512(_mm512_srli_epi32(qs, 4 * h), low2);
        c.w[i + 4] = _mm512_and_si512(_mm512_srli_epi32(qs, 4 * h + 2), low2);
    }
    if (q3) {
        const __m512i qh = gather(rows, at, p + 20 + 4 * h), four = _mm512_set1_epi8(4);
        /* byte k of row lane d of a 128-bit lane: byte j / 2 of that row's qh, tested against bit 4(j % 2) + k */
        const __m512i row_bytes = _mm512_set4_epi32(0x0C0C0C0C, 0x08080808, 0x04040404, 0x00000000);
        for (int j = 0; j < 8; j++) {
            const __m512i spread = _mm512_shuffle_epi8(qh, _mm512_add_epi8(row_bytes, _mm512_set1_epi8((char)(j / 2))));
            const __mmask64 set = _mm512_test_epi8_mask(spread, _mm512_set1_epi32((int)(0x08040201u << (4 * (j % 2)))));
            c.w[j] = _mm512_mask_add_epi8(c.w[j], set, c.w[j], four);
        }
    }
    if (pbs2p_dense_s16(type)) return scale_sub_blocks(c, gather(rows, at, p), h);
    const __m512i dm = gather(rows, at, p);
    c.dw = half_lanes(dm, 0);
    c.mw = half_lanes(dm, 1);
    return c;
}

/* Adds the terms of block b for tokens t0 .. t0 + nt - 1 to acc[t][b % 8] (our two-level blocks: T to acc, the min
 * term to accZ, as qdense_ref.c's s16_row). */
INLINE void block_terms(int32_t type, const block_codes *c, const pbs2p_q8_acts *A, size_t t0, int nt, int32_t b,
                        __m512 acc[][8], __m512 accZ[][8]) {
    const size_t nb = (size_t)A->blocks;
    for (int t = 0; t < nt; t++) {
        const int8_t *x = A->q + (t0 + (size_t)t) * (size_t)A->cols + (size_t)b * PBS2P_ACT_BLOCK;
        const size_t xb = (t0 + (size_t)t) * nb + (size_t)b;
        __m512i i0 = _mm512_setzero_si512(), i1 = _mm512_setzero_si512(); /* two chains of four */
        for (int j = 0; j < 4; j++) { /* broadcasts from memory: load ports, not the shuffle port */
            i0 = _mm512_dpbusd_epi32(i0, c->w[j], _mm512_broadcastd_epi32(_mm_loadu_si32(x + 4 * j)));
            i1 = _mm512_dpbusd_epi32(i1, c->w[j + 4], _mm512_broadcastd_epi32(_mm_loadu_si32(x + 16 + 4 * j)));
        }
        __m512i I = _mm512_add_epi32(i0, i1);
        if (pbs2p_dense_s16(type)) {
            acc[t][b % 8] = _mm512_fmadd_ps(_mm512_set1_ps(A->d[xb]), _mm512_cvtepi32_ps(I), acc[t][b % 8]);
            accZ[t][b % 8] = _mm512_fmadd_ps(c->mc1, _mm512_set1_ps(A->sh[xb]),
                                             _mm512_fmadd_ps(c->mc0, _mm512_set1_ps(A->sl[xb]), accZ[t][b % 8]));
            continue;
        }
        if (type == PBS2P_GGML_Q8_0) I = _mm512_sub_epi32(I, _mm512_set1_epi32(A->sum[xb] * 128));
        if (type == PBS2P_GGML_Q4_0) I = _mm512_sub_epi32(I, _mm512_set1_epi32(A->sum[xb] * 8));
        __m512 term = _mm512_mul_ps(_mm512_mul_ps(c->dw, _mm512_set1_ps(A->d[xb])), _mm512_cvtepi32_ps(I));
        if (type == PBS2P_DENSE_Q2_G64 || type == PBS2P_DENSE_Q3_G64)
            term = _mm512_add_ps(term, _mm512_mul_ps(c->mw, _mm512_set1_ps(A->s[xb])));
        acc[t][b % 8] = _mm512_add_ps(acc[t][b % 8], term);
    }
}

INLINE __m512 total8(const __m512 a[8]) {
    return _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(a[0], a[1]), _mm512_add_ps(a[2], a[3])),
                         _mm512_add_ps(_mm512_add_ps(a[4], a[5]), _mm512_add_ps(a[6], a[7])));
}

/* Rows r .. r + n - 1 (n <= 16) for tokens t0 .. t0 + nt - 1 (nt <= TOKENS). */
INLINE void group_tokens(int32_t type, const pbs2p_dense *W, const pbs2p_q8_acts *A, size_t t0, int nt, float *Y,
                         size_t ldy, int32_t r, int n) {
    const __mmask16 rows = (__mmask16)((1u << n) - 1);
    const __m512i at = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                          _mm512_set1_epi32((int)W->row_bytes));
    const uint8_t *base = W->data + (size_t)r * W->row_bytes;
    const int s16 = pbs2p_dense_s16(type);
    __m512 acc[TOKENS][8], accZ[s16 ? TOKENS : 1][8];
    for (int t = 0; t < nt; t++)
        for (int k = 0; k < 8; k++) acc[t][k] = accZ[s16 ? t : 0][k] = _mm512_setzero_ps();
    for (int32_t b = 0; b < A->blocks; b++) {
        const block_codes c = gather_block(type, base, at, rows, b);
        block_terms(type, &c, A, t0, nt, b, acc, accZ);
    }
    __m512 D = _mm512_setzero_ps(), M = D;
    if (s16) { /* the rows' D and M, from their headers */
        const __m512i dm = gather(rows, at, base);
        D = half_lanes(dm, 0), M = half_lanes(dm, 1);
    }
    for (int t = 0; t < nt; t++) {
        __m512 y = total8(acc[t]);
        if (s16) y = _mm512_sub_ps(_mm512_mul_ps(D, y), _mm512_mul_ps(M, total8(accZ[t])));
        _mm512_mask_storeu_ps(Y + (t0 + (size_t)t) * ldy + (size_t)r, rows, y);
    }
}

#include "qdense_lanes.h"

void pbs2p_qdense_rows_avx512(const pbs2p_dense *W, const pbs2p_q8_acts *A, size_t n_tokens, float *Y, size_t ldy,
                              int32_t row0, int32_t row1) {
    lanes_rows(W, A, n_tokens, Y, ldy, row0, row1);
}
#endif
