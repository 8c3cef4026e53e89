/* test_dense.c — ctest: the block layouts pinned by hand; every compiled variant's F16 row dots against exact decoding
 * and a double-precision reference (one-hot activations read back each decoded weight bit for bit; batch invariance);
 * the integer products of Q8_0, Q4_0, q2_g64, q3_g64 and the two-level q2/q3/q4_s16 bit for bit against the reference, against W . x' in double
 * precision, x' within half a quantization step of x, batch invariance and NaN propagation. */
#include "internal.h"
#define TEST_RNG_SEED 0x2545F4914F6CDD1Dull
#include "check.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A random float16 with exponent in 2^-10 .. 2^-3 and a random sign, at p (little-endian). */
static void put_scale(uint8_t *p) {
    uint16_t h = (uint16_t)(((5 + rnd() % 8) << 10) | (rnd() & 0x3FF) | ((rnd() & 1) << 15));
    p[0] = (uint8_t)h; p[1] = (uint8_t)(h >> 8);
}

/* Random bytes of a (rows, cols) matrix of `type`: F16 of any finite value incl. subnormals and zeros of both
 * signs, or blocks (Q8_0, Q4_0, q2_g64, q3_g64) with random codes and random finite scales (and mins) of either sign. */
static uint8_t *make_matrix(int32_t type, int32_t rows, int32_t cols, size_t *row_bytes) {
    int32_t block;
    size_t bytes;
    if (!pbs2p_dense_block(type, &block, &bytes)) abort();
    *row_bytes = pbs2p_dense_row_bytes(type, cols);
    uint8_t *p = malloc(*row_bytes * (size_t)rows + 1);
    for (size_t i = 0; i < *row_bytes * (size_t)rows; i++) p[i] = (uint8_t)rnd();
    if (pbs2p_dense_s16(type)) { /* the row's D and M; random sub-block codes and codes */
        for (size_t r = 0; r < (size_t)rows; r++) {
            put_scale(p + r * *row_bytes);
            put_scale(p + r * *row_bytes + 2);
        }
    } else if (type == PBS2P_GGML_F16) {
        for (size_t i = 0; i < (size_t)rows * cols; i++) /* exponent 31 (inf/nan) -> a finite exponent */
            if (((p[2 * i + 1] >> 2) & 0x1F) == 0x1F) p[2 * i + 1] &= (uint8_t)~0x40;
    } else {
        for (size_t b = 0; b < (size_t)rows * cols / (size_t)block; b++) {
            put_scale(p + b * bytes);
            if (type == PBS2P_DENSE_Q2_G64 || type == PBS2P_DENSE_Q3_G64) put_scale(p + b * bytes + 2); /* the min */
        }
    }
    return p;
}

/* One block of each type with known bytes decodes to hand-computed values: the layouts of FORMAT.md §10. */
static void check_layouts(void) {
    float out[64];
    uint8_t q4[18] = {0x00, 0x38}; /* d = 0.5 */
    q4[2] = 0x9F;                  /* q[0] = 15 -> 3.5, q[16] = 9 -> 0.5 */
    q4[17] = 0x08;                 /* q[15] = 8 -> 0, q[31] = 0 -> -4 */
    pbs2p_dense W = {q4, PBS2P_GGML_Q4_0, 18, 1, 32};
    pbs2p_dense_row(&W, 0, out);
    CHECK(out[0] == 3.5f && out[16] == 0.5f && out[15] == 0.0f && out[31] == -4.0f && out[1] == -4.0f,
          "Q4_0 layout: %g %g %g %g %g", out[0], out[16], out[15], out[31], out[1]);
    uint8_t q3[28] = {0x00, 0x34, 0x00, 0xBC}; /* d = 0.25, m = -1 */
    q3[4 + 0] = 0xE4;  /* q[0] = 0, q[16] = 1, q[32] = 2, q[48] = 3 (low bits) */
    q3[20 + 0] = 0x02; /* q[1] |= 4 */
    q3[20 + 7] = 0x80; /* q[63] |= 4 */
    W = (pbs2p_dense){q3, PBS2P_DENSE_Q3_G64, 28, 1, 64};
    pbs2p_dense_row(&W, 0, out);
    CHECK(out[0] == -1.0f && out[16] == -0.75f && out[32] == -0.5f && out[48] == -0.25f && out[1] == 0.0f &&
          out[63] == 0.0f, "q3_g64 layout: %g %g %g %g %g %g", out[0], out[16], out[32], out[48], out[1], out[63]);
    W.type = PBS2P_DENSE_Q2_G64; /* the same first 20 bytes read as q2_g64: no high bits */
    W.row_bytes = 20;
    pbs2p_dense_row(&W, 0, out);
    CHECK(out[48] == -0.25f && out[1] == -1.0f && out[63] == -1.0f, "q2_g64 layout: %g %g %g", out[48], out[1], out[63]);
    /* two-level: D = 0.5, M = 0.25; sub-block 0: sc 3, mc 4 (d 1.5, m -1); sub-block 3: sc 1, mc 0 (d 0.5, m 0) */
    uint8_t s4[4 + 36] = {0x00, 0x38, 0x00, 0x34, 0x43, 0x00, 0x00, 0x01};
    s4[4 + 4 + 0] = 0x2F;  /* q[0] = 15 -> 21.5, q[16] = 2 -> 2 */
    s4[4 + 4 + 31] = 0x70; /* q[47] = 0 -> 0 (sub-block 2: d 0, m 0), q[63] = 7 -> 3.5 */
    W = (pbs2p_dense){s4, PBS2P_DENSE_Q4_S16, 40, 1, 64};
    pbs2p_dense_row(&W, 0, out);
    CHECK(out[0] == 21.5f && out[1] == -1.0f && out[16] == 0.0f && out[63] == 3.5f && out[47] == 0.0f,
          "q4_s16 layout: %g %g %g %g %g", out[0], out[1], out[16], out[63], out[47]);
    uint8_t s3[4 + 28] = {0x00, 0x38, 0x00, 0x34, 0x43, 0x00, 0x00, 0x01};
    s3[4 + 4 + 0] = 0xC3;  /* q[0] = 3, q[48] = 3 (low bits) */
    s3[4 + 20 + 0] = 0x01; /* q[0] |= 4 -> 7: 1.5 * 7 - 1 = 9.5 */
    s3[4 + 20 + 7] = 0x80; /* q[63] = 0 | 4 -> 0.5 * 4 = 2 */
    W = (pbs2p_dense){s3, PBS2P_DENSE_Q3_S16, 32, 1, 64};
    pbs2p_dense_row(&W, 0, out);
    CHECK(out[0] == 9.5f && out[1] == -1.0f && out[63] == 2.0f && out[48] == 1.5f,
          "q3_s16 layout: %g %g %g %g", out[0], out[1], out[63], out[48]);
    W.type = PBS2P_DENSE_Q2_S16; /* the same first 24 bytes as q2_s16 */
    W.row_bytes = 24;
    pbs2p_dense_row(&W, 0, out);
    CHECK(out[0] == 3.5f && out[48] == 1.5f && out[63] == 0.0f, "q2_s16 layout: %g %g %g", out[0], out[48], out[63]);
}

/* A random matrix of `type` (make_matrix), its bytes to be freed with free_matrix. */
static pbs2p_dense random_matrix(int32_t type, int32_t rows, int32_t cols) {
    size_t rb;
    uint8_t *data = make_matrix(type, rows, cols, &rb);
    return (pbs2p_dense){data, type, rb, rows, cols};
}

static void free_matrix(pbs2p_dense *W) { free((void *)W->data); }

/* The kernels of variant `name`, selected. */
static pbs2p_kernels selected(const char *name) {
    pbs2p_kernels k = {0};
    CHECK(pbs2p_kernel_select(name) == PBS2P_OK && pbs2p_kernel_current(&k), "select %s", name);
    return k;
}

static void check_variant(const char *name, int32_t type, int32_t rows, int32_t cols, size_t T) {
    pbs2p_dense W = random_matrix(type, rows, cols);
    const pbs2p_kernels k = selected(name);
    float *X = malloc(sizeof(float) * T * cols), *Y = malloc(sizeof(float) * T * rows);
    float *Y1 = malloc(sizeof(float) * rows), *row = malloc(sizeof(float) * cols), *scratch = malloc(sizeof(float) * PBS2P_DENSE_ROWS * cols);
    for (size_t i = 0; i < T * (size_t)cols; i++) X[i] = rnd_unit();
    k.dense(&W, X, T, cols, Y, rows, 0, rows, scratch);
    double worst = 0;
    for (int32_t r = 0; r < rows; r++) {
        pbs2p_dense_row(&W, r, row);
        for (size_t t = 0; t < T; t++) {
            double exact = 0, mag = 0;
            for (int32_t j = 0; j < cols; j++) {
                exact += (double)X[t * cols + j] * row[j];
                mag += fabs((double)X[t * cols + j] * row[j]);
            }
            double err = fabs(Y[t * rows + r] - exact) / (mag + 1e-30);
            if (err > worst) worst = err;
        }
    }
    /* float32 sums of `cols` products: error <= cols * 2^-24 relative to sum |x w| (a loose bound, never reached) */
    CHECK(worst <= cols * 0x1p-24, "%s type %d %dx%d T=%zu: relative error %g", name, type, rows, cols, T, worst);
    for (size_t t = 0; t < T; t++) { /* one token alone == the same token in the batch, bit for bit */
        k.dense(&W, X + t * cols, 1, cols, Y1, rows, 0, rows, scratch);
        CHECK(memcmp(Y1, Y + t * rows, sizeof(float) * rows) == 0, "%s type %d %dx%d: token %zu differs alone",
              name, type, rows, cols, t);
    }
    /* one-hot activations read each decoded weight back exactly: the variant decodes as pbs2p_dense_row does */
    memset(X, 0, sizeof(float) * cols);
    for (int32_t j = 0; j < cols; j += 1 + cols / 9) {
        X[j] = 1.0f;
        k.dense(&W, X, 1, cols, Y1, rows, 0, rows, scratch);
        for (int32_t r = 0; r < rows; r++) {
            pbs2p_dense_row(&W, r, row);
            CHECK(memcmp(&Y1[r], &row[j], 4) == 0 || (Y1[r] == 0 && row[j] == 0), "%s type %d: w[%d,%d] %g != %g",
                  name, type, r, j, Y1[r], row[j]);
        }
        X[j] = 0.0f;
    }
    free_matrix(&W); free(X); free(Y); free(Y1); free(row); free(scratch);
}

/* The integer products of every type but F16: each variant gives the reference's bits, alone or in a batch; the result
 * is W . x' in exact arithmetic up to float32 rounding, x' the activations as quantized (d * q per block of 32), and
 * x' is x within half a step per block; a NaN in a block makes the products that read it NaN. */
static void check_qdense(const char *name, int32_t type, int32_t rows, int32_t cols, size_t T) {
    pbs2p_dense W = random_matrix(type, rows, cols);
    const pbs2p_kernels k = selected(name);
    float *X = malloc(sizeof(float) * T * cols), *Y = malloc(sizeof(float) * T * rows);
    float *Yref = malloc(sizeof(float) * T * rows), *Y1 = malloc(sizeof(float) * rows), *row = malloc(sizeof(float) * cols);
    for (size_t i = 0; i < T * (size_t)cols; i++) X[i] = (i % 37 == 5) ? 0.0f : rnd_unit() * (float)(1 + i % 5);
    void *mem = malloc(pbs2p_q8_acts_bytes(T, cols));
    pbs2p_q8_acts A;
    pbs2p_q8_acts_init(mem, T, cols, &A);
    pbs2p_q8_acts_quantize(X, 0, T / 2, &A); /* in two ranges, as threads fill it */
    pbs2p_q8_acts_quantize(X, T / 2, T, &A);
    k.qdense(&W, &A, T, Y, rows, 0, rows);
    pbs2p_qdense_rows_ref(&W, &A, T, Yref, rows, 0, rows);
    CHECK(memcmp(Y, Yref, sizeof(float) * T * rows) == 0, "%s type %d %dx%d T=%zu: differs from the reference",
          name, type, rows, cols, T);
    if (rows > 2) { /* a range of rows that starts and ends off any vector of rows writes those rows only */
        for (size_t i = 0; i < T * (size_t)rows; i++) Y[i] = -1.0f;
        k.qdense(&W, &A, T, Y, rows, 1, rows - 1);
        for (size_t t = 0; t < T; t++)
            for (int32_t r = 0; r < rows; r++) {
                const size_t i = t * (size_t)rows + (size_t)r;
                const int inside = r >= 1 && r < rows - 1;
                CHECK(inside ? memcmp(&Y[i], &Yref[i], sizeof(float)) == 0 : Y[i] == -1.0f,
                      "%s type %d %dx%d T=%zu: rows 1..%d: row %d token %zu %s", name, type, rows, cols, T, rows - 2, r,
                      t, inside ? "differs" : "written");
            }
        k.qdense(&W, &A, T, Y, rows, 0, rows);
    }
    double worst = 0, worst_q = 0;
    for (int32_t r = 0; r < rows; r++) {
        pbs2p_dense_row(&W, r, row);
        for (size_t t = 0; t < T; t++) {
            double exact = 0, mag = 0, exact_x = 0, bound = 0;
            for (int32_t j = 0; j < cols; j++) {
                const size_t b = t * (size_t)A.blocks + (size_t)j / 32;
                const double xq = (double)A.d[b] * A.q[t * cols + j], w = row[j];
                exact += xq * w;
                mag += fabs(xq * w);
                exact_x += (double)X[t * cols + j] * w;
                bound += fabs(w) * (double)A.d[b] * 0.5000001 + fabs(X[t * cols + j] * w) * 0x1p-22;
            }
            double err = fabs(Y[t * rows + r] - exact) / (mag + 1e-30);
            if (err > worst) worst = err;
            double err_q = fabs(exact - exact_x) / (bound + 1e-30);
            if (err_q > worst_q) worst_q = err_q;
        }
    }
    /* terms of at most two roundings each, summed in eight lanes of cols / 256 + 3 additions */
    CHECK(worst <= (cols / 32 + 8) * 0x1p-23, "%s type %d %dx%d T=%zu: relative error %g", name, type, rows, cols, T, worst);
    CHECK(worst_q <= 1.0, "%s type %d: quantized activations off by %g of half a step", name, type, worst_q);
    for (size_t t = 0; t < T; t++) { /* one token alone == the same token in the batch, bit for bit */
        pbs2p_q8_acts At = pbs2p_q8_acts_at(&A, t);
        k.qdense(&W, &At, 1, Y1, rows, 0, rows);
        CHECK(memcmp(Y1, Y + t * rows, sizeof(float) * rows) == 0, "%s type %d %dx%d: token %zu differs alone",
              name, type, rows, cols, t);
    }
    X[cols - 1] = NAN; /* the last block of token 0 */
    pbs2p_q8_acts_init(mem, 1, cols, &A);
    pbs2p_q8_acts_quantize(X, 0, 1, &A);
    k.qdense(&W, &A, 1, Y1, rows, 0, rows);
    for (int32_t r = 0; r < rows; r++) CHECK(isnan(Y1[r]), "%s type %d: a NaN activation gave %g", name, type, Y1[r]);
    free_matrix(&W); free(X); free(Y); free(Yref); free(Y1); free(row); free(mem);
}

/* Quantization of activations pinned by hand: d = max|x| / 127, ties to even, the code sum and d * sum. */
static void check_acts(void) {
    float x[64] = {0};
    x[0] = 127.0f; x[1] = -63.5f; x[2] = 0.5f; x[3] = 1.5f; x[4] = -2.5f; /* block 0: d = 1 */
    void *mem = malloc(pbs2p_q8_acts_bytes(2, 32));
    pbs2p_q8_acts A;
    pbs2p_q8_acts_init(mem, 2, 32, &A);
    pbs2p_q8_acts_quantize(x, 0, 2, &A);
    CHECK(A.blocks == 1 && A.d[0] == 1.0f && A.q[0] == 127 && A.q[1] == -64 && A.q[2] == 0 && A.q[3] == 2 && A.q[4] == -2,
          "acts: d %g q %d %d %d %d %d", A.d[0], A.q[0], A.q[1], A.q[2], A.q[3], A.q[4]);
    CHECK(A.sum[0] == 63 && A.s[0] == 63.0f, "acts: sum %d s %g", A.sum[0], A.s[0]);
    CHECK(A.d[1] == 0.0f && A.sum[1] == 0 && A.q[32] == 0, "acts: an all-zero block has d 0, codes 0");
    free(mem);
}

/* Every quantizer compiled in gives the reference's codes, scales and sums, bit for bit: values at every scale, ties,
 * clamped blocks, all-zero blocks, a NaN and an infinity, subnormals. */
static void check_acts_variants(void) {
    enum { T = 3, COLS = 40 * 32 };
    float *X = malloc(sizeof(float) * T * COLS);
    for (size_t i = 0; i < (size_t)T * COLS; i++) {
        const size_t blk = i / 32;
        X[i] = rnd_unit() * ldexpf(1.0f, (int)(blk % 40) - 20);
        if (blk % 7 == 3) X[i] = (float)((int)(i % 9) - 4) * 0.5f; /* halves: ties once scaled by 127 / 2 */
        if (blk % 11 == 5) X[i] = 0.0f;
        if (blk % 13 == 6) X[i] = 0x1p-140f * (float)(i % 5);
    }
    X[7 * 32 + 9] = NAN;
    X[29 * 32 + 31] = -INFINITY;
    void *m0 = malloc(pbs2p_q8_acts_bytes(T, COLS)), *m1 = malloc(pbs2p_q8_acts_bytes(T, COLS));
    pbs2p_q8_acts A0, A1;
    pbs2p_q8_acts_init(m0, T, COLS, &A0);
    pbs2p_q8_acts_init(m1, T, COLS, &A1);
    memset(m0, 0x55, pbs2p_q8_acts_bytes(T, COLS));
    memset(m1, 0xAA, pbs2p_q8_acts_bytes(T, COLS));
    pbs2p_q8_acts_quantize_ref(X, 0, T, &A0);
    pbs2p_q8_acts_quantize(X, 0, T, &A1); /* this CPU's */
    CHECK(memcmp(m0, m1, pbs2p_q8_acts_bytes(T, COLS)) == 0, "the quantizer in use differs from the reference");
#ifdef PBS2P_HAVE_AVX512
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw")) {
        memset(m1, 0xAA, pbs2p_q8_acts_bytes(T, COLS));
        pbs2p_q8_acts_quantize_avx512(X, 0, T, &A1);
        CHECK(memcmp(m0, m1, pbs2p_q8_acts_bytes(T, COLS)) == 0, "the AVX-512 quantizer differs from the reference");
    }
#endif
    CHECK(isnan(A0.d[7]) && isnan(A0.d[29]) && A0.d[5] == 0.0f, "non-finite blocks have d NaN, zero blocks d 0");
    free(X); free(m0); free(m1);
}

int main(void) {
    const char *names[8];
    size_t nv = pbs2p_kernel_variants(names, 8);
    static const int32_t f16_cols[] = {1, 7, 15, 16, 33, 576, 1000};
    static const int32_t q8_cols[] = {32, 64, 96, 256, 288, 576, 1024};
    static const int32_t g64_cols[] = {64, 128, 320, 576, 1536};
    check_layouts();
    check_acts();
    check_acts_variants();
    for (size_t v = 0; v < nv; v++) {
        if (!pbs2p_kernel_available(names[v])) continue;
        for (size_t c = 0; c < sizeof f16_cols / sizeof f16_cols[0]; c++)
            check_variant(names[v], PBS2P_GGML_F16, 1 + (int32_t)(c * 7) % 40, f16_cols[c], 1 + (c * 5) % 8);
        for (size_t c = 0; c < sizeof q8_cols / sizeof q8_cols[0]; c++)
            check_qdense(names[v], PBS2P_GGML_Q8_0, 3 + (int32_t)(c * 5) % 30, q8_cols[c], 1 + (c * 5) % 8);
        for (size_t c = 0; c < sizeof q8_cols / sizeof q8_cols[0]; c++)
            check_qdense(names[v], PBS2P_GGML_Q4_0, 1 + (int32_t)(c * 9) % 31, q8_cols[c], 1 + (c * 11) % 20);
        for (size_t c = 0; c < sizeof g64_cols / sizeof g64_cols[0]; c++) {
            check_qdense(names[v], PBS2P_DENSE_Q2_G64, c ? 7 + (int32_t)c * 40 : 1, g64_cols[c], 1 + (c * 5) % 8);
            check_qdense(names[v], PBS2P_DENSE_Q3_G64, c ? 129 - (int32_t)c * 30 : 1, g64_cols[c], 4 + c * 6);
            check_qdense(names[v], PBS2P_DENSE_Q2_S16, c ? 3 + (int32_t)c * 21 : 1, g64_cols[c], 1 + (c * 7) % 9);
            check_qdense(names[v], PBS2P_DENSE_Q3_S16, c ? 90 - (int32_t)c * 17 : 1, g64_cols[c], 2 + c * 5);
            check_qdense(names[v], PBS2P_DENSE_Q4_S16, 1 + (int32_t)c * 33, g64_cols[c], 1 + (c * 13) % 19);
        }
        /* a prompt's shapes: more rows than a vector of 16 with a partial last one, and tokens past a pass of 16 */
        check_qdense(names[v], PBS2P_GGML_Q8_0, 53, 576, 37);
        check_qdense(names[v], PBS2P_GGML_Q4_0, 64, 1536, 48);
        check_qdense(names[v], PBS2P_DENSE_Q2_G64, 35, 576, 17);
        check_qdense(names[v], PBS2P_DENSE_Q3_G64, 70, 320, 33);
        check_qdense(names[v], PBS2P_DENSE_Q2_S16, 45, 576, 19);
        check_qdense(names[v], PBS2P_DENSE_Q3_S16, 17, 1536, 40);
        check_qdense(names[v], PBS2P_DENSE_Q4_S16, 66, 576, 35);
        printf("dense rows %s: ok\n", names[v]);
    }
    pbs2p_kernel_select(NULL);
    if (failures) { fprintf(stderr, "%d failures\n", failures); return 1; }
    printf("all dense checks passed\n");
    return 0;
}
