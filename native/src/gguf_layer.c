/* gguf_layer.c — the pbs2p_layer_desc of one compressed linear of a pbs2p GGUF file: the pbs2p.* keys and the
 * <base>.pbs2p.<array> tensors, checked against each other (docs/GGUF.md §4 and §6, docs/FORMAT.md §2-5, §7). */
#include "internal.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#define SHOWN 80 /* bytes of a name quoted in an error message */
#define INFIX ".pbs2p."

/* pbs2p.linear.<field> (u32[L]) in pbs2p_layer_desc order of use below */
enum { F_N, F_ROWS, F_COLS, F_GROUP_SIZE, F_SPLIT, F_N_SALIENT, F_HAS_MU, F_HAS_COL_SCALE, N_FIELDS };
static const char *const FIELDS[N_FIELDS] = {"n", "rows", "cols", "group_size", "split", "n_salient", "has_mu",
                                             "has_col_scale"};

/* One packed array of a linear: its expected GGUF type and shape (ne order: the numpy shape reversed). */
typedef struct array_spec {
    const char *name;
    int present;
    int32_t type;     /* PBS2P_GGML_I8 for bit streams, PBS2P_GGML_F16 for scales */
    int32_t n_dims;
    uint64_t ne[3];
} array_spec;

/* A u32 key that a pbs2p file must have: absent -> PBS2P_ERR_FORMAT. */
static pbs2p_status required_u32(const pbs2p_gguf *f, const char *key, uint32_t *v) {
    pbs2p_status st = pbs2p_gguf_get_u32(f, key, v);
    if (st == PBS2P_ERR_NOT_FOUND) return pbs2p_fail(PBS2P_ERR_FORMAT, "pbs2p GGUF file lacks the key %s", key);
    return st;
}

/* Index of `base` in pbs2p.linear.names and the list's length. */
static pbs2p_status find_linear(const pbs2p_gguf *f, const char *base, uint64_t *index, uint64_t *count) {
    const void *unused;
    pbs2p_status st = pbs2p_gguf_get_arr(f, "pbs2p.linear.names", PBS2P_GGUF_STRING, &unused, count);
    if (st == PBS2P_ERR_NOT_FOUND) return pbs2p_fail(PBS2P_ERR_FORMAT, "pbs2p GGUF file lacks pbs2p.linear.names");
    if (st != PBS2P_OK) return st;
    size_t want = strlen(base);
    for (uint64_t i = 0; i < *count; i++) {
        const char *s;
        size_t len;
        if ((st = pbs2p_gguf_get_arr_str(f, "pbs2p.linear.names", i, &s, &len)) != PBS2P_OK) return st;
        if (len == want && memcmp(s, base, len) == 0) {
            *index = i;
            return PBS2P_OK;
        }
    }
    return pbs2p_fail(PBS2P_ERR_NOT_FOUND, "linear '%.*s' is not one of the %" PRIu64 " in pbs2p.linear.names",
                      SHOWN, base, *count);
}

/* pbs2p.linear.<field>[index] for every field; each list has `count` entries and values <= INT32_MAX. */
static pbs2p_status read_fields(const pbs2p_gguf *f, uint64_t index, uint64_t count, int32_t *v) {
    char key[64];
    for (int k = 0; k < N_FIELDS; k++) {
        const void *data;
        uint64_t n;
        uint32_t x;
        snprintf(key, sizeof key, "pbs2p.linear.%s", FIELDS[k]);
        pbs2p_status st = pbs2p_gguf_get_arr(f, key, PBS2P_GGUF_UINT32, &data, &n);
        if (st == PBS2P_ERR_NOT_FOUND) return pbs2p_fail(PBS2P_ERR_FORMAT, "pbs2p GGUF file lacks %s", key);
        if (st != PBS2P_OK) return st;
        if (n != count)
            return pbs2p_fail(PBS2P_ERR_FORMAT, "%s has %" PRIu64 " entries but pbs2p.linear.names has %" PRIu64,
                              key, n, count);
        memcpy(&x, (const uint8_t *)data + 4 * index, 4); /* little-endian u32, possibly unaligned */
        if (x > INT32_MAX) return pbs2p_fail(PBS2P_ERR_FORMAT, "%s[%" PRIu64 "] = %u is out of range", key, index, x);
        v[k] = (int32_t)x;
    }
    return PBS2P_OK;
}

/* "(ne[n-1], ..., ne[0])": a GGUF shape in numpy order. */
static void shape_str(char *out, size_t cap, int32_t n_dims, const uint64_t *ne) {
    size_t len = 0;
    out[0] = '\0';
    for (int32_t d = n_dims - 1; d >= 0 && len < cap; d--)
        len += (size_t)snprintf(out + len, cap - len, "%s%" PRIu64, d == n_dims - 1 ? "(" : ", ", ne[d]);
    if (len < cap) snprintf(out + len, cap - len, n_dims == 1 ? ",)" : ")");
}

/* Find, type-check and shape-check one array; *data = its bytes (NULL when absent). */
static pbs2p_status bind_array(const pbs2p_gguf *f, const char *base, const array_spec *spec, const void **data) {
    char name[PBS2P_GGUF_MAX_NAME + 32];
    pbs2p_gguf_tensor t;
    snprintf(name, sizeof name, "%s" INFIX "%s", base, spec->name);
    pbs2p_status st = pbs2p_gguf_find_tensor(f, name, &t);
    *data = NULL;
    if (st == PBS2P_ERR_NOT_FOUND) {
        if (!spec->present) return PBS2P_OK;
        return pbs2p_fail(PBS2P_ERR_FORMAT, "tensor '%.*s' is missing but the metadata of '%.*s' requires it",
                          SHOWN, name, SHOWN, base);
    }
    if (st != PBS2P_OK) return st;
    if (!spec->present)
        return pbs2p_fail(PBS2P_ERR_FORMAT, "tensor '%.*s' exists but the metadata of '%.*s' has no %s array",
                          SHOWN, name, SHOWN, base, spec->name);
    if (t.type != spec->type)
        return pbs2p_fail(PBS2P_ERR_FORMAT, "tensor '%.*s' has type %s, expected %s", SHOWN, name,
                          pbs2p_ggml_type_name(t.type), pbs2p_ggml_type_name(spec->type));
    int same = t.n_dims == spec->n_dims;
    for (int d = 0; d < spec->n_dims && same; d++) same = t.ne[d] == spec->ne[d];
    if (!same) {
        char got[96], want[96];
        shape_str(got, sizeof got, t.n_dims, t.ne);
        shape_str(want, sizeof want, spec->n_dims, spec->ne);
        return pbs2p_fail(PBS2P_ERR_FORMAT, "tensor '%.*s' has shape %s, the metadata requires %s (numpy order)",
                          SHOWN, name, got, want);
    }
    if (spec->type == PBS2P_GGML_F16 && ((uintptr_t)t.data & 1u))
        return pbs2p_fail(PBS2P_ERR_FORMAT, "tensor '%.*s' (float16) starts at an odd address", SHOWN, name);
    *data = t.data;
    return PBS2P_OK;
}

/* No <base>.pbs2p.<x> tensor other than the nine arrays of FORMAT.md. */
static pbs2p_status check_no_stray(const pbs2p_gguf *f, const char *base, const array_spec *specs, int n_specs) {
    pbs2p_gguf_info info;
    pbs2p_gguf_get_info(f, &info);
    size_t blen = strlen(base), ilen = strlen(INFIX);
    for (uint64_t i = 0; i < info.n_tensors; i++) {
        pbs2p_gguf_tensor t;
        pbs2p_gguf_tensor_at(f, i, &t);
        if (strncmp(t.name, base, blen) != 0 || strncmp(t.name + blen, INFIX, ilen) != 0) continue;
        const char *arr = t.name + blen + ilen;
        int known = 0;
        for (int k = 0; k < n_specs && !known; k++) known = strcmp(arr, specs[k].name) == 0;
        if (!known)
            return pbs2p_fail(PBS2P_ERR_FORMAT, "tensor '%.*s' is not a packed array of FORMAT.md", SHOWN, t.name);
    }
    return PBS2P_OK;
}

/* pbs2p.format_version (absent: not a pbs2p file) and pbs2p.m. */
static pbs2p_status check_header(const pbs2p_gguf *f, uint32_t *version, uint32_t *m) {
    pbs2p_status st = pbs2p_gguf_get_u32(f, "pbs2p.format_version", version);
    if (st == PBS2P_ERR_NOT_FOUND)
        return pbs2p_fail(PBS2P_ERR_NOT_PBS2P, "a GGUF file, but not a pbs2p one (no pbs2p.format_version key)");
    if (st != PBS2P_OK) return st;
    if (*version != PBS2P_FORMAT_VERSION)
        return pbs2p_fail(PBS2P_ERR_VERSION, "pbs2p format version %u is not supported (this library reads %d)",
                          *version, PBS2P_FORMAT_VERSION);
    return required_u32(f, "pbs2p.m", m);
}

/* ----------------------------------------------------------------------------------------------------
 * Tiers (docs/FORMAT.md §10): pbs2p.linear.tier names each linear's; the grid tiers are dense matrices */

typedef struct tier_spec {
    const char *name;
    int32_t type;       /* pbs2p_dense type */
    int ggml;           /* 1: stored as <base>.weight of that ggml type; 0: our blocks as I8 <base>.pbs2p.q */
} tier_spec;

static const tier_spec TIERS[] = {
    {"f16", PBS2P_GGML_F16, 1}, {"q8_0", PBS2P_GGML_Q8_0, 1}, {"q4_0", PBS2P_GGML_Q4_0, 1},
    {"q3_g64", PBS2P_DENSE_Q3_G64, 0}, {"q2_g64", PBS2P_DENSE_Q2_G64, 0},
    {"q4_s16", PBS2P_DENSE_Q4_S16, 0}, {"q3_s16", PBS2P_DENSE_Q3_S16, 0}, {"q2_s16", PBS2P_DENSE_Q2_S16, 0},
};

/* The TIERS row named s[0..len), or NULL. */
static const tier_spec *tier_named(const char *s, size_t len) {
    for (size_t k = 0; k < sizeof TIERS / sizeof TIERS[0]; k++)
        if (strlen(TIERS[k].name) == len && memcmp(TIERS[k].name, s, len) == 0) return &TIERS[k];
    return NULL;
}

const char *pbs2p_dense_tier_name(int32_t type) {
    for (size_t k = 0; k < sizeof TIERS / sizeof TIERS[0]; k++)
        if (TIERS[k].type == type) return TIERS[k].name;
    return NULL;
}

/* pbs2p.linear.tier[index] as a tier_spec, or NULL for the packed tier (also when the key is absent). */
static pbs2p_status tier_of(const pbs2p_gguf *f, const char *base, uint64_t index, uint64_t count,
                            const tier_spec **spec) {
    const void *unused;
    uint64_t n;
    const char *s;
    size_t len;
    *spec = NULL;
    pbs2p_status st = pbs2p_gguf_get_arr(f, "pbs2p.linear.tier", PBS2P_GGUF_STRING, &unused, &n);
    if (st == PBS2P_ERR_NOT_FOUND) return PBS2P_OK;
    if (st != PBS2P_OK) return st;
    if (n != count)
        return pbs2p_fail(PBS2P_ERR_FORMAT, "pbs2p.linear.tier has %" PRIu64 " entries but pbs2p.linear.names has %"
                          PRIu64, n, count);
    if ((st = pbs2p_gguf_get_arr_str(f, "pbs2p.linear.tier", index, &s, &len)) != PBS2P_OK) return st;
    if (len == 5 && memcmp(s, "pbs2p", 5) == 0) return PBS2P_OK;
    if ((*spec = tier_named(s, len))) return PBS2P_OK;
    return pbs2p_fail(PBS2P_ERR_UNSUPPORTED, "linear '%.*s' has the tier '%.*s', which this library does not know",
                      SHOWN, base, (int)(len < SHOWN ? len : SHOWN), s);
}

pbs2p_status pbs2p_gguf_linear_tier(const pbs2p_gguf *f, const char *base, int *dense, pbs2p_dense *out) {
    if (!f || !base || !dense || !out) return pbs2p_fail(PBS2P_ERR_NULL, "GGUF handle, linear name or output is NULL");
    *dense = 0;
    memset(out, 0, sizeof *out);
    uint32_t version, m;
    pbs2p_status st = check_header(f, &version, &m);
    if (st != PBS2P_OK) return st;
    uint64_t index, count;
    const tier_spec *spec;
    int32_t v[N_FIELDS];
    if ((st = find_linear(f, base, &index, &count)) != PBS2P_OK) return st;
    if ((st = tier_of(f, base, index, count, &spec)) != PBS2P_OK || !spec) return st;
    if ((st = read_fields(f, index, count, v)) != PBS2P_OK) return st;
    int32_t block;
    size_t bytes;
    pbs2p_dense_block(spec->type, &block, &bytes);
    const int32_t R = v[F_ROWS], K = v[F_COLS];
    if (R < 1 || K < 1 || K % block)
        return pbs2p_fail(PBS2P_ERR_FORMAT, "linear '%.*s' (%s) is (%d, %d): needs a positive shape and a width "
                          "divisible by %d", SHOWN, base, spec->name, (int)R, (int)K, (int)block);
    const size_t row_bytes = pbs2p_dense_row_bytes(spec->type, K);
    array_spec want = {spec->ggml ? "weight" : "q", 1, spec->ggml ? spec->type : PBS2P_GGML_I8, 2,
                       {spec->ggml ? (uint64_t)K : (uint64_t)row_bytes, (uint64_t)R, 1}};
    char name[PBS2P_GGUF_MAX_NAME + 32];
    pbs2p_gguf_tensor t;
    snprintf(name, sizeof name, spec->ggml ? "%s.weight" : "%s" INFIX "q", base);
    if ((st = pbs2p_gguf_find_tensor(f, name, &t)) == PBS2P_ERR_NOT_FOUND)
        return pbs2p_fail(PBS2P_ERR_FORMAT, "linear '%.*s' of tier %s lacks its tensor '%.*s'", SHOWN, base,
                          spec->name, SHOWN, name);
    if (st != PBS2P_OK) return st;
    if (t.type != want.type)
        return pbs2p_fail(PBS2P_ERR_FORMAT, "tensor '%.*s' has type %s, its tier %s needs %s", SHOWN, name,
                          pbs2p_ggml_type_name(t.type), spec->name, pbs2p_ggml_type_name(want.type));
    if (t.n_dims != 2 || t.ne[0] != want.ne[0] || t.ne[1] != want.ne[1]) {
        char got[96], exp[96];
        shape_str(got, sizeof got, t.n_dims, t.ne);
        shape_str(exp, sizeof exp, 2, want.ne);
        return pbs2p_fail(PBS2P_ERR_FORMAT, "tensor '%.*s' has shape %s, the metadata requires %s (numpy order)",
                          SHOWN, name, got, exp);
    }
    if ((st = check_no_stray(f, base, &want, spec->ggml ? 0 : 1)) != PBS2P_OK) return st; /* no packed arrays */
    *out = (pbs2p_dense){t.data, spec->type, row_bytes, R, K};
    *dense = 1;
    return PBS2P_OK;
}

/* pbs2p.embedding.tier as one of our block tiers; *spec NULL when the key is absent (ggml-typed embedding). */
static pbs2p_status embedding_tier(const pbs2p_gguf *f, const tier_spec **spec) {
    const char *s;
    size_t len;
    *spec = NULL;
    pbs2p_status st = pbs2p_gguf_get_str(f, "pbs2p.embedding.tier", &s, &len);
    if (st == PBS2P_ERR_NOT_FOUND) return PBS2P_OK;
    if (st != PBS2P_OK) return st;
    const tier_spec *t = tier_named(s, len);
    if (t && !t->ggml) {
        *spec = t;
        return PBS2P_OK;
    }
    return pbs2p_fail(PBS2P_ERR_UNSUPPORTED, "pbs2p.embedding.tier '%.*s' is not a block tier this library knows",
                      (int)(len < SHOWN ? len : SHOWN), s);
}

pbs2p_status pbs2p_gguf_embedding_blocks(const pbs2p_gguf *f, const char *base, int32_t cols, pbs2p_dense *out) {
    if (!f || !base || !out) return pbs2p_fail(PBS2P_ERR_NULL, "GGUF handle, tensor name or output is NULL");
    memset(out, 0, sizeof *out);
    const tier_spec *spec;
    pbs2p_status st = embedding_tier(f, &spec);
    if (st != PBS2P_OK) return st;
    if (!spec) return PBS2P_ERR_NOT_FOUND;
    char name[PBS2P_GGUF_MAX_NAME + 32];
    pbs2p_gguf_tensor t;
    snprintf(name, sizeof name, "%.*s.weight", SHOWN, base);
    if (pbs2p_gguf_find_tensor(f, name, &t) == PBS2P_OK)
        return pbs2p_fail(PBS2P_ERR_FORMAT, "tensor %s is in a file whose embedding tier is %s (%.*s" INFIX "q)",
                          name, spec->name, SHOWN, base);
    snprintf(name, sizeof name, "%.*s" INFIX "q", SHOWN, base);
    if ((st = pbs2p_gguf_find_tensor(f, name, &t)) != PBS2P_OK) return st; /* NOT_FOUND: the caller decides */
    int32_t block;
    size_t bytes;
    pbs2p_dense_block(spec->type, &block, &bytes);
    if (cols < 1 || cols % block)
        return pbs2p_fail(PBS2P_ERR_FORMAT, "tensor %s: the %s tier needs a width divisible by %d, the model's is %d",
                          name, spec->name, (int)block, (int)cols);
    const size_t row_bytes = pbs2p_dense_row_bytes(spec->type, cols);
    if (t.type != PBS2P_GGML_I8 || t.n_dims != 2 || t.ne[0] != row_bytes || t.ne[1] < 1)
        return pbs2p_fail(PBS2P_ERR_FORMAT, "tensor %s must be I8 of %zu bytes a row (%s, width %d), found %s with ne[0] "
                          "%" PRIu64, name, row_bytes, spec->name, (int)cols,
                          pbs2p_ggml_type_name(t.type) ? pbs2p_ggml_type_name(t.type) : "?", t.ne[0]);
    if (t.ne[1] > INT32_MAX) return pbs2p_fail(PBS2P_ERR_FORMAT, "tensor %s has %" PRIu64 " rows", name, t.ne[1]);
    *out = (pbs2p_dense){t.data, spec->type, row_bytes, (int32_t)t.ne[1], cols};
    return PBS2P_OK;
}

pbs2p_status pbs2p_gguf_layer_desc(const pbs2p_gguf *f, const char *base, pbs2p_layer_desc *out) {
    if (!f || !base || !out) return pbs2p_fail(PBS2P_ERR_NULL, "GGUF handle, linear name or output is NULL");
    memset(out, 0, sizeof *out);
    if (strlen(base) > PBS2P_GGUF_MAX_NAME)
        return pbs2p_fail(PBS2P_ERR_ARGUMENT, "linear name of %zu bytes is longer than any GGUF name", strlen(base));
    uint32_t version, m;
    pbs2p_status st = check_header(f, &version, &m);
    if (st != PBS2P_OK) return st;
    uint64_t index, count;
    int32_t v[N_FIELDS];
    const tier_spec *tier;
    if ((st = find_linear(f, base, &index, &count)) != PBS2P_OK) return st;
    if ((st = tier_of(f, base, index, count, &tier)) != PBS2P_OK) return st;
    if (tier)
        return pbs2p_fail(PBS2P_ERR_UNSUPPORTED, "linear '%.*s' is stored in the %s tier, not packed", SHOWN, base,
                          tier->name);
    if ((st = read_fields(f, index, count, v)) != PBS2P_OK) return st;

    pbs2p_layer_desc d = {0};
    d.format_version = (int32_t)version;
    d.m = m > INT32_MAX ? -1 : (int32_t)m;
    d.n = v[F_N]; d.rows = v[F_ROWS]; d.cols = v[F_COLS]; d.group_size = v[F_GROUP_SIZE]; d.split = v[F_SPLIT];
    d.n_salient = v[F_N_SALIENT]; d.has_salient = d.n_salient > 0;
    d.has_mu = v[F_HAS_MU]; d.has_col_scale = v[F_HAS_COL_SCALE];
    pbs2p_layer_sizes z;
    if ((st = pbs2p_layer_sizes_of(&d, &z)) != PBS2P_OK) {
        char why[256];
        snprintf(why, sizeof why, "%s", pbs2p_last_error());
        return pbs2p_fail(PBS2P_ERR_FORMAT, "linear '%.*s': %s", SHOWN, base, why);
    }

    const uint64_t R = (uint64_t)d.rows, K = (uint64_t)d.cols, G = z.groups_per_row, nreg = z.regions;
    const int sal = d.has_salient;
    const int32_t I8 = PBS2P_GGML_I8, F16 = PBS2P_GGML_F16;
    array_spec specs[] = {
        {"mask", pbs2p_mask_code_bits(d.n, d.m) > 0, I8, 2, {z.mask_row_bytes, R, 1}},
        {"signs", 1, I8, 2, {z.signs_row_bytes, R, 1}},
        {"signs2", sal, I8, 2, {z.signs2_row_bytes, R, 1}},
        {"salient", sal, I8, 1, {z.salient_bytes, 1, 1}},
        {"groups", d.split >= 2, I8, 2, {z.groups_row_bytes, R, 1}},
        {"alpha", 1, F16, 3, {G, R, nreg}},
        {"alpha2", sal, F16, 2, {G, R, 1}},
        {"mu", d.has_mu, F16, 3, {G, R, nreg}},
        {"col_scale", d.has_col_scale, F16, 2, {K, nreg, 1}},
    };
    enum { N_SPECS = sizeof specs / sizeof specs[0] };
    const void *ptr[N_SPECS];
    for (int k = 0; k < N_SPECS; k++)
        if ((st = bind_array(f, base, &specs[k], &ptr[k])) != PBS2P_OK) return st;
    d.mask = ptr[0]; d.signs = ptr[1]; d.signs2 = ptr[2]; d.salient = ptr[3]; d.groups = ptr[4];
    d.alpha = ptr[5]; d.alpha2 = ptr[6]; d.mu = ptr[7]; d.col_scale = ptr[8];
    if ((st = check_no_stray(f, base, specs, N_SPECS)) != PBS2P_OK) return st;

    if (sal) { /* the salient stream marks exactly n_salient of the K columns */
        int64_t marked = 0;
        for (uint64_t j = 0; j < K; j++) marked += (d.salient[j >> 3] >> (j & 7)) & 1u;
        if (marked != d.n_salient)
            return pbs2p_fail(PBS2P_ERR_FORMAT, "linear '%.*s': the salient stream marks %" PRId64
                              " columns but pbs2p.linear.n_salient says %d", SHOWN, base, marked, (int)d.n_salient);
    }
    *out = d;
    return PBS2P_OK;
}

/* pbs2p.linear.names[i] as a C string in buf (PBS2P_GGUF_MAX_NAME + 1 bytes). */
static pbs2p_status linear_name(const pbs2p_gguf *f, uint64_t i, char *buf) {
    const char *s;
    size_t len;
    pbs2p_status st = pbs2p_gguf_get_arr_str(f, "pbs2p.linear.names", i, &s, &len);
    if (st != PBS2P_OK) return st;
    if (len == 0 || len > PBS2P_GGUF_MAX_NAME || memchr(s, 0, len))
        return pbs2p_fail(PBS2P_ERR_FORMAT, "pbs2p.linear.names[%" PRIu64 "] is not a valid tensor base name", i);
    memcpy(buf, s, len);
    buf[len] = '\0';
    return PBS2P_OK;
}

pbs2p_status pbs2p_gguf_check_linears(const pbs2p_gguf *f, uint64_t *n_linears) {
    char name[PBS2P_GGUF_MAX_NAME + 1];
    uint64_t count, first;
    uint32_t version, m;
    const void *unused;
    pbs2p_layer_desc d;
    if (!f) return pbs2p_fail(PBS2P_ERR_NULL, "GGUF handle is NULL");
    pbs2p_status st = check_header(f, &version, &m);
    if (st != PBS2P_OK) return st;
    st = pbs2p_gguf_get_arr(f, "pbs2p.linear.names", PBS2P_GGUF_STRING, &unused, &count);
    if (st == PBS2P_ERR_NOT_FOUND) return pbs2p_fail(PBS2P_ERR_FORMAT, "pbs2p GGUF file lacks pbs2p.linear.names");
    if (st != PBS2P_OK) return st;
    for (uint64_t i = 0; i < count; i++) {
        if ((st = linear_name(f, i, name)) != PBS2P_OK) return st;
        if ((st = find_linear(f, name, &first, &count)) != PBS2P_OK) return st;
        if (first != i)
            return pbs2p_fail(PBS2P_ERR_FORMAT, "pbs2p.linear.names lists '%.*s' twice (entries %" PRIu64 " and %" PRIu64 ")",
                              SHOWN, name, first, i);
    }
    for (uint64_t i = 0; i < count; i++) {
        pbs2p_dense dense_matrix;
        int dense;
        if ((st = linear_name(f, i, name)) != PBS2P_OK) return st;
        if ((st = pbs2p_gguf_linear_tier(f, name, &dense, &dense_matrix)) != PBS2P_OK) return st;
        if (!dense && (st = pbs2p_gguf_layer_desc(f, name, &d)) != PBS2P_OK) return st;
    }
    const tier_spec *embedding;
    if ((st = embedding_tier(f, &embedding)) != PBS2P_OK) return st;
    pbs2p_gguf_info info;
    pbs2p_gguf_get_info(f, &info);
    for (uint64_t i = 0; i < info.n_tensors; i++) { /* no packed tensor of an unlisted linear */
        pbs2p_gguf_tensor t;
        pbs2p_gguf_tensor_at(f, i, &t);
        const char *infix = strstr(t.name, INFIX);
        if (!infix) continue;
        size_t blen = (size_t)(infix - t.name);
        if (embedding && (strcmp(t.name, "token_embd" INFIX "q") == 0 || strcmp(t.name, "output" INFIX "q") == 0))
            continue; /* the embedding / head in our blocks, read by pbs2p_gguf_embedding_blocks */
        memcpy(name, t.name, blen); /* < PBS2P_GGUF_MAX_NAME: a prefix of a valid name */
        name[blen] = '\0';
        if ((st = find_linear(f, name, &first, &count)) == PBS2P_ERR_NOT_FOUND)
            return pbs2p_fail(PBS2P_ERR_FORMAT, "tensor '%.*s' belongs to no linear of pbs2p.linear.names", SHOWN, t.name);
        if (st != PBS2P_OK) return st;
    }
    if (n_linears) *n_linears = count;
    return PBS2P_OK;
}
