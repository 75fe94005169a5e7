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

static void layer_clear(te_layer *L)
{
    free(L->name);
    free(L->w_scale);
    free(L->bias);
    free(L->r);
    free(L->s);
    free(L->w_l1);
    free(L->w);
    free(L->w_float);
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
        layer_clear(&m->layers[i]);
    free(m->values);
    free(m->nodes);
    free(m->layers);
    free(m->name);
    free(m);
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

const char *te_op_name(te_op op)
{
    switch (op) {
    case TE_OP_INVALID: return "Invalid";
    case TE_OP_LINEAR: return "Linear";
    case TE_OP_RELU: return "Relu";
    case TE_OP_LEAKY_RELU: return "LeakyRelu";
    case TE_OP_PRELU: return "PRelu";
    case TE_OP_CLIP: return "Clip";
    case TE_OP_SIGMOID: return "Sigmoid";
    case TE_OP_TANH: return "Tanh";
    case TE_OP_HARD_SIGMOID: return "HardSigmoid";
    case TE_OP_HARD_SWISH: return "HardSwish";
    case TE_OP_MAXPOOL: return "MaxPool";
    case TE_OP_AVGPOOL: return "AveragePool";
    case TE_OP_GLOBAL_AVGPOOL: return "GlobalAveragePool";
    case TE_OP_LRN: return "LRN";
    case TE_OP_RESHAPE: return "Reshape";
    case TE_OP_CONCAT: return "Concat";
    case TE_OP_ADD: return "Add";
    case TE_OP_SUB: return "Sub";
    case TE_OP_MUL: return "Mul";
    case TE_OP_DIV: return "Div";
    case TE_OP_SOFTMAX: return "Softmax";
    case TE_OP_PAD: return "Pad";
    case TE_OP_LPNORM: return "LpNormalization";
    case TE_OP_REDUCE_L2: return "ReduceL2";
    case TE_OP_TRANSPOSE: return "Transpose";
    case TE_OP_FLOAT_LINEAR: return "FloatLinear";
    case TE_OP_SQRT: return "Sqrt";
    case TE_OP_COUNT_: break;
    }
    return "Unknown";
}
