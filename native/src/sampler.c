/* sampler.c — the next token from a row of logits: greedy arg-max, or top-k, temperature, softmax, top-p, draw. */
#include "internal.h"

#include <math.h>
#include <stdlib.h>

/* One candidate token: its logit (float, as the model gave it) and, once computed, its unnormalized weight. */
typedef struct candidate {
    float logit;
    int32_t id;
    double w;  /* exp((logit - max) / temperature), in [0, 1] */
} candidate;

struct pbs2p_sampler {
    pbs2p_sampler_params p;
    int32_t n_vocab;
    uint64_t state;     /* splitmix64 state */
    candidate *cand;    /* (n_vocab,) scratch */
};

/* ---- generator ---------------------------------------------------------------------------------- */

/* splitmix64 (Steele, Lea, Flood 2014): a 64-bit counter stepped by the golden-ratio constant, then mixed. */
static uint64_t splitmix64_next(uint64_t *state) {
    uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* Uniform double in [0, 1) from the top 53 bits: every value is exact, the same on every machine. */
static double uniform01(uint64_t *state) { return (double)(splitmix64_next(state) >> 11) * 0x1.0p-53; }

/* ---- parameters --------------------------------------------------------------------------------- */

pbs2p_sampler_params pbs2p_sampler_default_params(void) {
    pbs2p_sampler_params p = {0.0f, 0, 1.0f, 0};
    return p;
}

static pbs2p_status check_params(const pbs2p_sampler_params *p) {
    if (isnan(p->temperature)) return pbs2p_fail(PBS2P_ERR_ARGUMENT, "temperature is NaN");
    if (p->temperature > 0 && isinf(p->temperature))
        return pbs2p_fail(PBS2P_ERR_ARGUMENT, "temperature must be finite (<= 0: greedy), got inf");
    if (p->top_k < 0) return pbs2p_fail(PBS2P_ERR_ARGUMENT, "top_k %d must be >= 0 (0: off)", (int)p->top_k);
    if (!(p->top_p > 0.0f && p->top_p <= 1.0f))
        return pbs2p_fail(PBS2P_ERR_ARGUMENT, "top_p %g must be in (0, 1] (1: off)", (double)p->top_p);
    return PBS2P_OK;
}

pbs2p_status pbs2p_sampler_new(const pbs2p_sampler_params *params, int32_t n_vocab, pbs2p_sampler **out) {
    if (!out) return pbs2p_fail(PBS2P_ERR_NULL, "out is NULL");
    *out = NULL;
    pbs2p_sampler_params p = params ? *params : pbs2p_sampler_default_params();
    pbs2p_status st = check_params(&p);
    if (st != PBS2P_OK) return st;
    if (n_vocab < 1) return pbs2p_fail(PBS2P_ERR_ARGUMENT, "n_vocab %d must be >= 1", (int)n_vocab);
    pbs2p_sampler *s = calloc(1, sizeof *s);
    if (!s) return pbs2p_fail(PBS2P_ERR_NOMEM, "out of memory for the sampler");
    s->cand = malloc((size_t)n_vocab * sizeof *s->cand);
    if (!s->cand) {
        free(s);
        return pbs2p_fail(PBS2P_ERR_NOMEM, "out of memory for the sampler's %d candidates", (int)n_vocab);
    }
    if (p.top_k > n_vocab) p.top_k = n_vocab;
    s->p = p;
    s->n_vocab = n_vocab;
    s->state = p.seed;
    *out = s;
    return PBS2P_OK;
}

void pbs2p_sampler_free(pbs2p_sampler *s) {
    if (!s) return;
    free(s->cand);
    free(s);
}

/* ---- ordering ----------------------------------------------------------------------------------- */

/* a ranks before b: larger logit, or the same logit and the lower id (so ties are kept in id order). */
static int better(const candidate *a, const candidate *b) {
    return a->logit > b->logit || (a->logit == b->logit && a->id < b->id);
}

static int cmp_better_first(const void *pa, const void *pb) {
    const candidate *a = pa, *b = pb;
    return better(a, b) ? -1 : better(b, a) ? 1 : 0;
}

/* Restore the min-heap (root = the worst candidate) below node i of heap[0..k). */
static void sift_down(candidate *heap, size_t k, size_t i) {
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, worst = i;
        if (l < k && better(&heap[worst], &heap[l])) worst = l;
        if (r < k && better(&heap[worst], &heap[r])) worst = r;
        if (worst == i) return;
        candidate t = heap[i];
        heap[i] = heap[worst];
        heap[worst] = t;
        i = worst;
    }
}

/* Move the k best of c[0..n) to c[0..k), best first, the rest after them (c stays a permutation, so a later call
 * may select more): a size-k heap over the array, O(n log k). */
static void select_top_k(candidate *c, size_t n, size_t k) {
    if (k == n) {
        qsort(c, n, sizeof *c, cmp_better_first);
        return;
    }
    for (size_t i = k / 2; i-- > 0;) sift_down(c, k, i);
    for (size_t i = k; i < n; i++)
        if (better(&c[i], &c[0])) {
            const candidate t = c[0];
            c[0] = c[i];
            c[i] = t;
            sift_down(c, k, 0);
        }
    qsort(c, k, sizeof *c, cmp_better_first);
}

/* Candidates sorted first when looking for the top-p prefix (more when they do not reach top_p). */
#define TOP_P_FIRST 64

/* ---- sampling ----------------------------------------------------------------------------------- */

static int32_t argmax(const float *logits, size_t n) {
    size_t best = 0;
    for (size_t i = 1; i < n; i++)
        if (logits[i] > logits[best]) best = i;
    return (int32_t)best;
}

pbs2p_status pbs2p_sampler_sample(pbs2p_sampler *s, const float *logits, size_t n, int32_t *token) {
    if (!s || !logits || !token)
        return pbs2p_fail(PBS2P_ERR_NULL, "%s is NULL", !s ? "sampler" : !logits ? "logits" : "token");
    if (n != (size_t)s->n_vocab)
        return pbs2p_fail(PBS2P_ERR_ARGUMENT, "logits holds %zu values; the sampler was made for n_vocab %d", n,
                          (int)s->n_vocab);
    for (size_t i = 0; i < n; i++)
        if (isnan(logits[i])) return pbs2p_fail(PBS2P_ERR_ARGUMENT, "logit %zu is NaN", i);
    if (!(s->p.temperature > 0)) {
        *token = argmax(logits, n);
        return PBS2P_OK;
    }

    candidate *c = s->cand;
    for (size_t i = 0; i < n; i++) c[i] = (candidate){logits[i], (int32_t)i, 0.0};
    size_t kept = n, sorted = 0; /* c[0..kept) the candidates; c[0..sorted) the best of them, best first */
    if (s->p.top_k > 0 && (size_t)s->p.top_k < n) {
        kept = sorted = (size_t)s->p.top_k;
        select_top_k(c, n, kept);
    }

    /* Softmax in double over the kept candidates. With an infinite maximum (+inf, or every logit -inf) the
     * tokens equal to it share the mass evenly, the limit of the finite case. */
    float max = c[0].logit;
    for (size_t i = 1; i < kept; i++)
        if (c[i].logit > max) max = c[i].logit;
    const double T = (double)s->p.temperature;
    double sum = 0.0;
    for (size_t i = 0; i < kept; i++) {
        c[i].w = isinf(max) ? (c[i].logit == max ? 1.0 : 0.0) : exp(((double)c[i].logit - (double)max) / T);
        sum += c[i].w;
    }

    /* Top-p: the shortest best-first prefix whose probability reaches top_p. The prefix is found among the best
     * `sorted` candidates, growing them 8-fold until it fits, so a peaked distribution never sorts the whole
     * vocabulary; the prefix is the same as a full sort's (the order is total). */
    if (s->p.top_p < 1.0f) {
        const double target = (double)s->p.top_p * sum;
        size_t want = sorted ? sorted : kept < TOP_P_FIRST ? kept : TOP_P_FIRST;
        for (;;) {
            if (sorted < want) select_top_k(c, kept, sorted = want);
            double cum = 0.0;
            size_t i = 0;
            while (i < sorted && cum < target) cum += c[i++].w;
            if (cum >= target || sorted == kept) {
                kept = i;
                sum = cum;
                break;
            }
            want = sorted > kept / 8 ? kept : sorted * 8;
        }
    }

    /* Draw u in [0, sum) and walk the cumulative weights; rounding at the end falls back to the last token with
     * a non-zero weight (the maximum has weight 1, so there is one). */
    const double u = uniform01(&s->state) * sum;
    double cum = 0.0;
    size_t pick = kept;
    for (size_t i = 0; i < kept; i++) {
        cum += c[i].w;
        if (u < cum) {
            pick = i;
            break;
        }
    }
    if (pick == kept)
        for (pick = kept; pick-- > 0;)
            if (c[pick].w > 0.0) break;
    *token = c[pick].id;
    return PBS2P_OK;
}
