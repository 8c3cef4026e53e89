/* gguf_lookup.c — reading an open GGUF file: its summary, key-values by index or key with typed getters, tensors by index or name. */
#include "gguf_internal.h"

#include <inttypes.h>
#include <string.h>

#define SHOWN 80 /* bytes of a name quoted in an error message */

pbs2p_status pbs2p_gguf_get_info(const pbs2p_gguf *f, pbs2p_gguf_info *out) {
    if (!f || !out) return pbs2p_fail(PBS2P_ERR_NULL, "GGUF handle or output is NULL");
    *out = f->info;
    return PBS2P_OK;
}

/* ---- key-values ---- */

static void fill_kv(const gguf_kv_rec *r, pbs2p_gguf_kv *out) {
    out->key = r->key;
    out->type = r->type;
    out->elem_type = r->elem_type;
    out->count = r->count;
    out->data = r->data;
}

pbs2p_status pbs2p_gguf_kv_at(const pbs2p_gguf *f, uint64_t index, pbs2p_gguf_kv *out) {
    if (!f || !out) return pbs2p_fail(PBS2P_ERR_NULL, "GGUF handle or output is NULL");
    if (index >= f->info.n_kv)
        return pbs2p_fail(PBS2P_ERR_ARGUMENT, "key-value index %" PRIu64 " >= %" PRIu64, index, f->info.n_kv);
    fill_kv(&f->kv[index], out);
    return PBS2P_OK;
}

static pbs2p_status find_rec(const pbs2p_gguf *f, const char *key, const gguf_kv_rec **out) {
    if (!f || !key) return pbs2p_fail(PBS2P_ERR_NULL, "GGUF handle or key is NULL");
    const gguf_name_ix *hit = pbs2p_gguf_lookup(f->kv_by_name, f->info.n_kv, key);
    if (!hit) return pbs2p_fail(PBS2P_ERR_NOT_FOUND, "GGUF key '%.*s' not found", SHOWN, key);
    *out = &f->kv[hit->index];
    return PBS2P_OK;
}

pbs2p_status pbs2p_gguf_find_key(const pbs2p_gguf *f, const char *key, pbs2p_gguf_kv *out) {
    const gguf_kv_rec *r = NULL;
    if (!out) return pbs2p_fail(PBS2P_ERR_NULL, "output is NULL");
    pbs2p_status st = find_rec(f, key, &r);
    if (st == PBS2P_OK) fill_kv(r, out);
    return st;
}

static const char *const TYPE_NAMES[13] = {"UINT8", "INT8", "UINT16", "INT16", "UINT32", "INT32", "FLOAT32",
                                           "BOOL", "STRING", "ARRAY", "UINT64", "INT64", "FLOAT64"};

/* The record of `key` if its value has type `type` (and, for arrays, elements of `elem_type`). */
static pbs2p_status typed(const pbs2p_gguf *f, const char *key, int32_t type, int32_t elem_type, const gguf_kv_rec **out) {
    pbs2p_status st = find_rec(f, key, out);
    if (st != PBS2P_OK) return st;
    const gguf_kv_rec *r = *out;
    if (r->type != type || r->elem_type != elem_type) {
        if (type == PBS2P_GGUF_ARRAY || r->type == PBS2P_GGUF_ARRAY)
            return pbs2p_fail(PBS2P_ERR_TYPE, "GGUF key '%.*s' is %s%s%s, not %s%s%s", SHOWN, key,
                              TYPE_NAMES[r->type], r->type == PBS2P_GGUF_ARRAY ? " of " : "",
                              r->type == PBS2P_GGUF_ARRAY ? TYPE_NAMES[r->elem_type] : "",
                              TYPE_NAMES[type], type == PBS2P_GGUF_ARRAY ? " of " : "",
                              type == PBS2P_GGUF_ARRAY ? TYPE_NAMES[elem_type] : "");
        return pbs2p_fail(PBS2P_ERR_TYPE, "GGUF key '%.*s' is %s, not %s", SHOWN, key, TYPE_NAMES[r->type],
                          TYPE_NAMES[type]);
    }
    return PBS2P_OK;
}

/* Scalar getters copy the little-endian bytes (the mapping is only byte-aligned); hosts are little-endian
 * (libpbs2p reads float16 streams in place, see internal.h). */
#define SCALAR_GETTER(fn, ctype, gtype)                                                      \
    pbs2p_status fn(const pbs2p_gguf *f, const char *key, ctype *out) {                     \
        const gguf_kv_rec *r = NULL; /* set on success; quiets -Wmaybe-uninitialized */       \
        if (!out) return pbs2p_fail(PBS2P_ERR_NULL, "output is NULL");                       \
        pbs2p_status st = typed(f, key, gtype, gtype, &r);                                   \
        if (st == PBS2P_OK) memcpy(out, r->data, sizeof *out);                               \
        return st;                                                                           \
    }
SCALAR_GETTER(pbs2p_gguf_get_u32, uint32_t, PBS2P_GGUF_UINT32)
SCALAR_GETTER(pbs2p_gguf_get_i32, int32_t, PBS2P_GGUF_INT32)
SCALAR_GETTER(pbs2p_gguf_get_u64, uint64_t, PBS2P_GGUF_UINT64)
SCALAR_GETTER(pbs2p_gguf_get_i64, int64_t, PBS2P_GGUF_INT64)
SCALAR_GETTER(pbs2p_gguf_get_f32, float, PBS2P_GGUF_FLOAT32)
SCALAR_GETTER(pbs2p_gguf_get_f64, double, PBS2P_GGUF_FLOAT64)

pbs2p_status pbs2p_gguf_get_bool(const pbs2p_gguf *f, const char *key, int *out) {
    const gguf_kv_rec *r = NULL;
    if (!out) return pbs2p_fail(PBS2P_ERR_NULL, "output is NULL");
    pbs2p_status st = typed(f, key, PBS2P_GGUF_BOOL, PBS2P_GGUF_BOOL, &r);
    if (st == PBS2P_OK) *out = r->data[0]; /* validated 0 or 1 */
    return st;
}

pbs2p_status pbs2p_gguf_get_str(const pbs2p_gguf *f, const char *key, const char **s, size_t *len) {
    const gguf_kv_rec *r = NULL;
    if (!s || !len) return pbs2p_fail(PBS2P_ERR_NULL, "output is NULL");
    pbs2p_status st = typed(f, key, PBS2P_GGUF_STRING, PBS2P_GGUF_STRING, &r);
    if (st == PBS2P_OK) {
        *s = (const char *)r->data;
        *len = (size_t)r->count; /* <= PBS2P_GGUF_MAX_STRING */
    }
    return st;
}

pbs2p_status pbs2p_gguf_get_arr(const pbs2p_gguf *f, const char *key, int32_t elem_type,
                                const void **data, uint64_t *count) {
    const gguf_kv_rec *r = NULL;
    if (!data || !count) return pbs2p_fail(PBS2P_ERR_NULL, "output is NULL");
    if (elem_type < 0 || elem_type > PBS2P_GGUF_FLOAT64 || elem_type == PBS2P_GGUF_ARRAY)
        return pbs2p_fail(PBS2P_ERR_ARGUMENT, "array element type %d is not a GGUF scalar or string type", (int)elem_type);
    pbs2p_status st = typed(f, key, PBS2P_GGUF_ARRAY, elem_type, &r);
    if (st == PBS2P_OK) {
        *data = r->data;
        *count = r->count;
    }
    return st;
}

pbs2p_status pbs2p_gguf_get_arr_str(const pbs2p_gguf *f, const char *key, uint64_t index, const char **s, size_t *len) {
    const gguf_kv_rec *r = NULL;
    if (!s || !len) return pbs2p_fail(PBS2P_ERR_NULL, "output is NULL");
    pbs2p_status st = typed(f, key, PBS2P_GGUF_ARRAY, PBS2P_GGUF_STRING, &r);
    if (st != PBS2P_OK) return st;
    if (index >= r->count)
        return pbs2p_fail(PBS2P_ERR_ARGUMENT, "GGUF key '%.*s': index %" PRIu64 " >= %" PRIu64 " strings", SHOWN, key,
                          index, r->count);
    const gguf_str *e = &f->strs[r->first_str + index];
    *s = (const char *)e->bytes;
    *len = (size_t)e->len;
    return PBS2P_OK;
}

/* ---- tensors ---- */

pbs2p_status pbs2p_gguf_tensor_at(const pbs2p_gguf *f, uint64_t index, pbs2p_gguf_tensor *out) {
    if (!f || !out) return pbs2p_fail(PBS2P_ERR_NULL, "GGUF handle or output is NULL");
    if (index >= f->info.n_tensors)
        return pbs2p_fail(PBS2P_ERR_ARGUMENT, "tensor index %" PRIu64 " >= %" PRIu64, index, f->info.n_tensors);
    *out = f->tensors[index];
    return PBS2P_OK;
}

pbs2p_status pbs2p_gguf_find_tensor(const pbs2p_gguf *f, const char *name, pbs2p_gguf_tensor *out) {
    if (!f || !name || !out) return pbs2p_fail(PBS2P_ERR_NULL, "GGUF handle, name or output is NULL");
    const gguf_name_ix *hit = pbs2p_gguf_lookup(f->t_by_name, f->info.n_tensors, name);
    if (!hit) return pbs2p_fail(PBS2P_ERR_NOT_FOUND, "GGUF tensor '%.*s' not found", SHOWN, name);
    *out = f->tensors[hit->index];
    return PBS2P_OK;
}
