/* attention_impl.h — causal attention of one query and one head over the KV cache, in plain C shaped for the
 * compiler's vectorizer (e^x too: exp_approx.h): every inner loop runs along contiguous memory with no reduction across
 * its iterations (the softmax's max and sum keep LANES running values).
 * The keys are stored transposed (key dimension d of position p at kt[d * ldk + p]), so the scores of all positions
 * grow together, four key dimensions per pass; the output grows four positions per pass over the value rows. Each
 * attention_<variant>.c includes this file and is compiled with its variant's flags and FMA contraction, so the same
 * lines become AVX2, AVX-512 or NEON code. The order of the sums is fixed by the code, not by the thread count. */
#ifndef PBS2P_ATTENTION_IMPL_H
#define PBS2P_ATTENTION_IMPL_H

#include <math.h>

#include "exp_approx.h"

#define LANES 16 /* running maxima and sums of the softmax: one AVX-512 vector, two AVX2 or four NEON vectors */

static void attend(const float *restrict q, const float *restrict kt, size_t ldk, const float *restrict v, size_t ldv,
                   int32_t n, int32_t hd, float scale, float *restrict s, float *restrict out) {
    /* s[p] = q . key p */
    for (int32_t p = 0; p < n; p++) s[p] = 0.0f;
    int32_t d = 0;
    for (; d + 4 <= hd; d += 4) {
        const float q0 = q[d], q1 = q[d + 1], q2 = q[d + 2], q3 = q[d + 3];
        const float *restrict k0 = kt + (size_t)d * ldk, *restrict k1 = k0 + ldk, *restrict k2 = k1 + ldk,
                    *restrict k3 = k2 + ldk;
        for (int32_t p = 0; p < n; p++) s[p] += q0 * k0[p] + q1 * k1[p] + q2 * k2[p] + q3 * k3[p];
    }
    for (; d < hd; d++) {
        const float qd = q[d], *restrict k = kt + (size_t)d * ldk;
        for (int32_t p = 0; p < n; p++) s[p] += qd * k[p];
    }
    /* softmax(scale * s); the max and the sum run in LANES independent lanes, so they vectorize too */
    float lane[LANES], mx = -INFINITY, sum = 0.0f;
    for (int k = 0; k < LANES; k++) lane[k] = -INFINITY;
    int32_t p0 = 0;
    for (; p0 + LANES <= n; p0 += LANES)
        for (int k = 0; k < LANES; k++) {
            s[p0 + k] *= scale;
            lane[k] = s[p0 + k] > lane[k] ? s[p0 + k] : lane[k];
        }
    for (int32_t p = p0; p < n; p++) {
        s[p] *= scale;
        mx = s[p] > mx ? s[p] : mx;
    }
    for (int k = 0; k < LANES; k++) mx = lane[k] > mx ? lane[k] : mx;
    for (int32_t p = 0; p < n; p++) s[p] = exp_approx(s[p] - mx);
    for (int k = 0; k < LANES; k++) lane[k] = 0.0f;
    for (int32_t p = 0; p + LANES <= n; p += LANES)
        for (int k = 0; k < LANES; k++) lane[k] += s[p + k];
    for (int32_t p = p0; p < n; p++) sum += s[p];
    for (int k = 0; k < LANES; k++) sum += lane[k];
    const float inv = 1.0f / sum;
    /* out = sum_p s[p] inv value p */
    for (int32_t j = 0; j < hd; j++) out[j] = 0.0f;
    int32_t p = 0;
    for (; p + 4 <= n; p += 4) {
        const float a0 = s[p] * inv, a1 = s[p + 1] * inv, a2 = s[p + 2] * inv, a3 = s[p + 3] * inv;
        const float *restrict v0 = v + (size_t)p * ldv, *restrict v1 = v0 + ldv, *restrict v2 = v1 + ldv,
                    *restrict v3 = v2 + ldv;
        for (int32_t j = 0; j < hd; j++) out[j] += a0 * v0[j] + a1 * v1[j] + a2 * v2[j] + a3 * v3[j];
    }
    for (; p < n; p++) {
        const float a = s[p] * inv, *restrict vp = v + (size_t)p * ldv;
        for (int32_t j = 0; j < hd; j++) out[j] += a * vp[j];
    }
}

#endif
