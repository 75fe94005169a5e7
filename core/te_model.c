#include "te_model.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *te_shape_str(const te_shape *s, char *buf, size_t len)
{
    if (len == 0)
        return buf;
    size_t used = (size_t)snprintf(buf, len, "[");
    for (int i = 0; i < s->ndim && i < TE_MAX_DIMS && used < len; i++)
        used += (size_t)snprintf(buf + used, len - used, i ? ",%lld" : "%lld", (long long)s->d[i]);
    if (used < len)
        snprintf(buf + used, len - used, "]");
    return buf;
}

int64_t te_shape_numel(const te_shape *s)
{
    /* -1 for an invalid shape (bad ndim, negative dim, overflow) */
    if (!s || s->ndim < 0 || s->ndim > TE_MAX_DIMS)
        return -1;
    int64_t n = 1;
    for (int i = 0; i < s->ndim; i++) {
        if (s->d[i] < 0 || __builtin_mul_overflow(n, s->d[i], &n))
            return -1;
    }
    return n;
}

/* ---- linear layer geometry ---- */

int64_t te_geom_in_len(const te_linear_geom *g)
{
    return g->in_c * g->in_h * g->in_w;
}

int64_t te_geom_out_len(const te_linear_geom *g)
{
    return g->out_c * g->out_h * g->out_w;
}

int64_t te_geom_dot_len(const te_linear_geom *g)
{
    if (g->kind == TE_LIN_FC)
        return g->in_c;
    if (g->group <= 0)
        return 0;
    return (g->in_c / g->group) * g->k_h * g->k_w;
}

int64_t te_geom_weight_len(const te_linear_geom *g)
{
    return g->out_c * te_geom_dot_len(g);
}

int64_t te_geom_macs(const te_linear_geom *g)
{
    return te_geom_out_len(g) * te_geom_dot_len(g);
}

/* ---- model allocation ---- */

te_model *te_model_new(void)
{
    te_model *m = calloc(1, sizeof *m);
    if (m) {
        m->input = -1;
        m->output = -1;
    }
    return m;
}

static char *dup_str(const char *s)
{
    if (!s)
        return NULL;
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d)
        memcpy(d, s, n);
    return d;
}

static void node_clear(te_node *n)
{
    free(n->name);
    free(n->in);
    free(n->ints);
}

void te_layer_clear(te_layer *L)
{
    free(L->name);
    free(L->w_scale);
    free(L->bias);
    free(L->r);
    free(L->s);
    free(L->w_l1);
    free(L->w);
    free(L->w_float);
    memset(L, 0, sizeof *L);
}

void te_model_free(te_model *m)
{
    if (!m)
        return;
    for (int i = 0; i < m->n_values; i++) {
        free(m->values[i].name);
        free(m->values[i].data);
    }
    for (int i = 0; i < m->n_nodes; i++)
        node_clear(&m->nodes[i]);
    for (int i = 0; i < m->n_layers; i++)
        te_layer_clear(&m->layers[i]);
    free(m->values);
    free(m->nodes);
    free(m->layers);
    free(m->outputs);
    free(m->name);
    free(m);
}

int te_model_n_outputs(const te_model *m)
{
    return m->n_outputs > 1 ? m->n_outputs : 1;
}

int te_model_output(const te_model *m, int k)
{
    if (k < 0 || k >= te_model_n_outputs(m))
        return -1;
    return m->n_outputs > 1 ? m->outputs[k] : m->output;
}

int64_t te_model_outputs_numel(const te_model *m)
{
    int64_t n = 0;
    for (int k = 0; k < te_model_n_outputs(m); k++)
        n += te_shape_numel(&m->values[te_model_output(m, k)].shape);
    return n;
}

int te_model_set_outputs(te_model *m, const int *ids, int n)
{
    if (n < 1)
        return -1;
    int *o = NULL;
    if (n > 1) {
        if (!(o = malloc((size_t)n * sizeof *o)))
            return -1;
        memcpy(o, ids, (size_t)n * sizeof *o);
    }
    free(m->outputs);
    m->outputs = o;
    m->n_outputs = n > 1 ? n : 0;
    m->output = ids[0];
    return 0;
}

/* Arrays grow one element at a time: callers may also build the arrays
 * themselves with exact sizes, so no hidden capacity is assumed. */
static int grow(void **arr, int count, size_t elem)
{
    if (count < 0 || count == 0x7fffffff)
        return -1;
    void *p = realloc(*arr, ((size_t)count + 1) * elem);
    if (!p)
        return -1;
    *arr = p;
    return 0;
}

/* On failure (-1) nothing is taken over: data_owned stays with the caller. */
int te_model_add_value(te_model *m, const char *name, const te_shape *shape, float *data_owned)
{
    if (!m || !shape)
        return -1;
    char *nm = dup_str(name ? name : "");
    if (!nm || grow((void **)&m->values, m->n_values, sizeof *m->values) != 0) {
        free(nm);
        return -1;
    }
    te_value *v = &m->values[m->n_values];
    memset(v, 0, sizeof *v);
    v->name = nm;
    v->shape = *shape;
    v->data = data_owned;
    return m->n_values++;
}

int te_model_add_node(te_model *m, const te_node *t)
{
    if (!m || !t || t->n_in < 0 || t->n_ints < 0 || (t->n_in && !t->in) || (t->n_ints && !t->ints))
        return -1;
    te_node n = *t;
    n.name = dup_str(t->name ? t->name : "");
    n.in = t->n_in ? malloc((size_t)t->n_in * sizeof *n.in) : NULL;
    n.ints = t->n_ints ? malloc((size_t)t->n_ints * sizeof *n.ints) : NULL;
    if (!n.name || (t->n_in && !n.in) || (t->n_ints && !n.ints) ||
        grow((void **)&m->nodes, m->n_nodes, sizeof *m->nodes) != 0) {
        node_clear(&n);
        return -1;
    }
    if (t->n_in)
        memcpy(n.in, t->in, (size_t)t->n_in * sizeof *n.in);
    if (t->n_ints)
        memcpy(n.ints, t->ints, (size_t)t->n_ints * sizeof *n.ints);
    m->nodes[m->n_nodes] = n;
    return m->n_nodes++;
}

/* The name is copied; w_scale, bias, r, s, w and w_float are taken over
 * (only on success: on failure they stay with the caller). */
int te_model_add_layer(te_model *m, const te_layer *t)
{
    if (!m || !t)
        return -1;
    char *nm = dup_str(t->name ? t->name : "");
    if (!nm || grow((void **)&m->layers, m->n_layers, sizeof *m->layers) != 0) {
        free(nm);
        return -1;
    }
    te_layer *L = &m->layers[m->n_layers];
    *L = *t;
    L->name = nm;
    return m->n_layers++;
}

static const te_op_desc op_table[TE_OP_COUNT_] = {
    [TE_OP_INVALID] = {"Invalid", 0, 0, 0, 0, "", 0},
#define TE_OP(ID, code, name, min_in, max_in, out_flops, in_flops, why, dyn_rows, dyn, run)                          \
    [TE_OP_##ID] = {name, min_in, max_in, out_flops, in_flops, why, dyn_rows},
#include "te_ops.def"
#undef TE_OP
};

const te_op_desc *te_op_info(te_op op)
{
    if ((int)op < 0 || op >= TE_OP_COUNT_ || !op_table[op].name)
        return NULL;
    return &op_table[op];
}

const char *te_op_name(te_op op)
{
    const te_op_desc *d = te_op_info(op);
    return d && op != TE_OP_INVALID ? d->name : op == TE_OP_INVALID ? "Invalid" : "Unknown";
}

double te_node_flops(const te_model *m, const te_node *n)
{
    const te_op_desc *d = te_op_info(n->op);
    if (!d || n->op == TE_OP_LINEAR || n->out < 0 || n->out >= m->n_values)
        return 0;
    double out = (double)te_shape_numel(&m->values[n->out].shape);
    double in = n->n_in > 0 && n->in[0] >= 0 && n->in[0] < m->n_values
                    ? (double)te_shape_numel(&m->values[n->in[0]].shape)
                    : 0;
    double f = d->out_flops * out + d->in_flops * in;
    switch (n->op) {
    case TE_OP_MAXPOOL:
    case TE_OP_AVGPOOL: f += (double)(n->kernel[0] * n->kernel[1]) * out; break;
    case TE_OP_LRN: f += (double)(2 * n->size + 4) * out; break;
    case TE_OP_MATMUL: {
        /* 2*K per output, K = the first operand's last dimension */
        const te_shape *a = &m->values[n->in[0]].shape;
        f += 2.0 * (double)(a->ndim ? a->d[a->ndim - 1] : 1) * out;
        break;
    }
    default: break;
    }
    return f;
}
