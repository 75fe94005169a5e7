/* Branch fusion (fuse.h).
 *
 * Why it is exact: every branch reads the same tensor, so calibration gave
 * each the same frac_bits, and the fused layer encodes that tensor once,
 * exactly as each branch did.  Output channel o of the fused layer is a dot
 * product with branch b's row o - o_b (zero taps added where a smaller kernel
 * is embedded), so its integer result, scale and bias are branch b's; a
 * wider ring holds the same integer, so the decoded floats are bit-identical
 * to the unfused model's.  The integrity check needs nothing new: the keys
 * are drawn later, per device, over the fused W (r over all its outputs,
 * s = W^T r), and each row's bound w_l1 is the branch row's (zero taps add
 * nothing). */
#include "fuse.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NAME_MAX_JOINED 120

typedef struct group {
    int target;   /* node whose geometry the fused layer takes */
    int first;    /* the members' earliest node: where the fused layer runs */
    int n;        /* members */
    int *nodes;   /* members in node order */
    int64_t *oh, *ow; /* each member's kernel offset inside the target's */
} group;

/* The axis along which a linear node's output value holds the layer's
 * output channels, or -1 when its shape does not lay them out as the
 * fused output would (then the layer is left alone). */
static int channel_axis(const te_model *m, const te_node *nd)
{
    const te_linear_geom *g = &m->layers[nd->layer].geom;
    const te_shape *s = &m->values[nd->out].shape;
    if (g->kind == TE_LIN_CONV)
        return s->ndim == 4 && s->d[0] == g->batch && s->d[1] == g->out_c && s->d[2] == g->out_h &&
                       s->d[3] == g->out_w
                   ? 1
                   : -1;
    return s->ndim >= 1 && s->d[s->ndim - 1] == g->out_c && te_shape_numel(s) == g->batch * g->out_c ? s->ndim - 1
                                                                                                       : -1;
}

/* Can node b's layer run inside node t's geometry?  Sets b's kernel offset. */
static int fits(const te_model *m, const te_node *t, const te_node *b, te_fuse_mode mode, int64_t *oh, int64_t *ow)
{
    const te_layer *LT = &m->layers[t->layer], *LB = &m->layers[b->layer];
    const te_linear_geom *gt = &LT->geom, *gb = &LB->geom;
    const te_shape *st = &m->values[t->out].shape, *sb = &m->values[b->out].shape;
    if (gt->kind != gb->kind || gt->batch != gb->batch || gt->in_c != gb->in_c || gt->in_h != gb->in_h ||
        gt->in_w != gb->in_w || LT->frac_bits != LB->frac_bits ||
        st->ndim != sb->ndim)
        return 0;
    *oh = *ow = 0;
    if (gt->kind == TE_LIN_FC) {
        for (int d = 0; d + 1 < st->ndim; d++)
            if (st->d[d] != sb->d[d])
                return 0;
        return 1;
    }
    if (gt->group != 1 || gb->group != 1 || gt->out_h != gb->out_h || gt->out_w != gb->out_w ||
        gt->stride_h != gb->stride_h || gt->stride_w != gb->stride_w || gt->dil_h != gb->dil_h ||
        gt->dil_w != gb->dil_w)
        return 0;
    /* b's tap kh reads input row stride*i - pad_t_b + dil*kh and t's tap
     * kh + oh reads stride*i - pad_t_t + dil*(kh + oh): the same row for
     * every output row i exactly when pad_t_t - pad_t_b = dil*oh (columns
     * alike).  t's other taps get zero weights; equal output sizes make the
     * bottom and right pads irrelevant. */
    int64_t dh = gt->pad_t - gb->pad_t, dw = gt->pad_l - gb->pad_l;
    if (dh < 0 || dw < 0 || dh % gt->dil_h || dw % gt->dil_w)
        return 0;
    *oh = dh / gt->dil_h;
    *ow = dw / gt->dil_w;
    if (*oh + gb->k_h > gt->k_h || *ow + gb->k_w > gt->k_w)
        return 0;
    if (mode < TE_FUSE_EMBED && (gb->k_h != gt->k_h || gb->k_w != gt->k_w))
        return 0;
    return 1;
}

static void groups_free(group *gs, int n)
{
    for (int i = 0; i < n; i++) {
        free(gs[i].nodes);
        free(gs[i].oh);
        free(gs[i].ow);
    }
    free(gs);
}

/* Partition the linear nodes into groups of two or more; done[i] marks a
 * node already placed or left alone. */
static te_status plan(const te_model *m, te_fuse_mode mode, group **out, int *n_out, te_err *err)
{
    int nn = m->n_nodes, ng = 0;
    char *done = calloc((size_t)(nn ? nn : 1), 1);
    int *cand = malloc((size_t)(nn ? nn : 1) * sizeof *cand);
    group *gs = NULL;
    te_status st = TE_OK;
    if (!done || !cand) {
        st = te_errf(err, TE_ENOMEM, "out of memory fusing layers");
        goto out;
    }
    for (int i = 0; i < nn; i++) {
        const te_node *ni = &m->nodes[i];
        if (ni->op != TE_OP_LINEAR || done[i] || channel_axis(m, ni) < 0)
            continue;
        int nc = 0;
        for (int j = i; j < nn; j++) {
            const te_node *nj = &m->nodes[j];
            if (nj->op == TE_OP_LINEAR && !done[j] && nj->in[0] == ni->in[0] && channel_axis(m, nj) >= 0)
                cand[nc++] = j;
        }
        for (;;) {
            /* the largest kernel left hosts the others (first in node order on a tie) */
            int t = -1;
            int64_t area = -1;
            for (int k = 0; k < nc; k++) {
                const te_linear_geom *g = &m->layers[m->nodes[cand[k]].layer].geom;
                if (!done[cand[k]] && g->k_h * g->k_w > area) {
                    t = cand[k];
                    area = g->k_h * g->k_w;
                }
            }
            if (t < 0)
                break;
            done[t] = 1;
            group g = {.target = t, .first = t};
            g.nodes = malloc((size_t)nc * sizeof *g.nodes);
            g.oh = malloc((size_t)nc * sizeof *g.oh);
            g.ow = malloc((size_t)nc * sizeof *g.ow);
            group *grown = realloc(gs, (size_t)(ng + 1) * sizeof *gs);
            if (!g.nodes || !g.oh || !g.ow || !grown) {
                free(g.nodes);
                free(g.oh);
                free(g.ow);
                if (grown)
                    gs = grown;
                st = te_errf(err, TE_ENOMEM, "out of memory fusing layers");
                goto out;
            }
            gs = grown;
            for (int k = 0; k < nc; k++) {
                int j = cand[k];
                int64_t oh, ow;
                if (j == t || (!done[j] && fits(m, &m->nodes[t], &m->nodes[j], mode, &oh, &ow))) {
                    if (j == t)
                        oh = ow = 0;
                    done[j] = 1;
                    g.nodes[g.n] = j;
                    g.oh[g.n] = oh;
                    g.ow[g.n] = ow;
                    g.n++;
                    g.first = j < g.first ? j : g.first;
                }
            }
            if (g.n < 2) {
                free(g.nodes);
                free(g.oh);
                free(g.ow);
                continue;
            }
            gs[ng++] = g;
        }
    }
out:
    free(done);
    free(cand);
    if (st != TE_OK) {
        groups_free(gs, ng);
        return st;
    }
    *out = gs;
    *n_out = ng;
    return TE_OK;
}

/* "a+b+c", or "a+b+(3 more)" past NAME_MAX_JOINED characters */
static char *joined_name(const te_model *m, const group *g)
{
    char buf[NAME_MAX_JOINED + 32];
    size_t used = 0;
    buf[0] = '\0';
    for (int k = 0; k < g->n; k++) {
        const char *nm = m->layers[m->nodes[g->nodes[k]].layer].name;
        nm = nm ? nm : "?";
        if (k && used + strlen(nm) + 1 > NAME_MAX_JOINED) {
            snprintf(buf + used, sizeof buf - used, "+(%d more)", g->n - k);
            break;
        }
        used += (size_t)snprintf(buf + used, sizeof buf - used, k ? "+%.*s" : "%.*s", NAME_MAX_JOINED, nm);
        if (used >= sizeof buf)
            used = sizeof buf - 1;
    }
    size_t n = strlen(buf) + 1;
    char *s = malloc(n);
    if (s)
        memcpy(s, buf, n);
    return s;
}

/* The fused layer of group g (its arrays owned by F). */
static te_status build_layer(const te_model *m, const group *g, te_layer *F, te_err *err)
{
    const te_layer *T = &m->layers[m->nodes[g->target].layer];
    memset(F, 0, sizeof *F);
    F->geom = T->geom;
    F->geom.out_c = 0;
    int have_float = 1, have_bias = 0;
    for (int k = 0; k < g->n; k++) {
        const te_layer *B = &m->layers[m->nodes[g->nodes[k]].layer];
        F->geom.out_c += B->geom.out_c;
        have_float &= B->w_float != NULL;
        have_bias |= B->bias != NULL;
    }
    const te_linear_geom *fg = &F->geom;
    int64_t oc = fg->out_c, dot = te_geom_dot_len(fg);
    size_t nw = (size_t)(oc * dot);
    F->name = joined_name(m, g);
    F->w = calloc(nw, sizeof *F->w);
    F->w_float = have_float ? calloc(nw, sizeof *F->w_float) : NULL;
    F->w_scale = malloc((size_t)oc * sizeof *F->w_scale);
    F->w_l1 = malloc((size_t)oc * sizeof *F->w_l1);
    F->bias = have_bias ? calloc((size_t)oc, sizeof *F->bias) : NULL;
    if (!F->name || !F->w || (have_float && !F->w_float) || !F->w_scale || !F->w_l1 || (have_bias && !F->bias)) {
        te_layer_clear(F);
        return te_errf(err, TE_ENOMEM, "out of memory fusing layers");
    }
    F->frac_bits = T->frac_bits;
    F->weight_bits = T->weight_bits;
    F->n_branches = g->n;
    int64_t o0 = 0;
    for (int k = 0; k < g->n; k++) {
        const te_layer *B = &m->layers[m->nodes[g->nodes[k]].layer];
        const te_linear_geom *bg = &B->geom;
        int64_t boc = bg->out_c;
        if (!B->w || !B->w_scale || !B->w_l1 || B->r || B->s) {
            te_layer_clear(F);
            return te_errf(err, TE_EINVAL, "layer '%s': fusion needs quantised weights and bounds, and no keys yet",
                           B->name ? B->name : "?");
        }
        F->ring_bits = B->ring_bits > F->ring_bits ? B->ring_bits : F->ring_bits;
        /* --precision auto may quantise the branches to different widths: the widest holds them all */
        F->weight_bits = B->weight_bits > F->weight_bits ? B->weight_bits : F->weight_bits;
        F->calib_max_abs_x = B->calib_max_abs_x > F->calib_max_abs_x ? B->calib_max_abs_x : F->calib_max_abs_x;
        F->calib_max_abs_y = B->calib_max_abs_y > F->calib_max_abs_y ? B->calib_max_abs_y : F->calib_max_abs_y;
        memcpy(F->w_scale + o0, B->w_scale, (size_t)boc * sizeof *F->w_scale);
        memcpy(F->w_l1 + o0, B->w_l1, (size_t)boc * sizeof *F->w_l1);
        if (B->bias)
            memcpy(F->bias + o0, B->bias, (size_t)boc * sizeof *F->bias);
        if (fg->kind == TE_LIN_FC) {
            memcpy(F->w + o0 * dot, B->w, (size_t)(boc * dot) * sizeof *F->w);
            if (have_float)
                memcpy(F->w_float + o0 * dot, B->w_float, (size_t)(boc * dot) * sizeof *F->w_float);
        } else {
            /* [o][c][kh][kw] (groups 1): branch tap (kh, kw) lands at (kh + oh, kw + ow) */
            for (int64_t o = 0; o < boc; o++)
                for (int64_t c = 0; c < bg->in_c; c++)
                    for (int64_t y = 0; y < bg->k_h; y++)
                        for (int64_t x = 0; x < bg->k_w; x++) {
                            int64_t src = ((o * bg->in_c + c) * bg->k_h + y) * bg->k_w + x;
                            int64_t dst = (((o0 + o) * fg->in_c + c) * fg->k_h + y + g->oh[k]) * fg->k_w + x + g->ow[k];
                            F->w[dst] = B->w[src];
                            if (have_float)
                                F->w_float[dst] = B->w_float[src];
                        }
        }
        o0 += boc;
    }
    return TE_OK;
}

te_status te_owner_fuse(te_model *m, te_fuse_mode mode, te_err *err)
{
    if (mode == TE_FUSE_NONE)
        return TE_OK;
    /* each layer run by exactly one node, as the importer builds them;
     * anything else is left as it is */
    int *uses = calloc((size_t)(m->n_layers ? m->n_layers : 1), sizeof *uses);
    if (!uses)
        return te_errf(err, TE_ENOMEM, "out of memory fusing layers");
    int shared = 0;
    for (int i = 0; i < m->n_nodes; i++)
        if (m->nodes[i].op == TE_OP_LINEAR && m->nodes[i].layer >= 0 && m->nodes[i].layer < m->n_layers)
            uses[m->nodes[i].layer]++;
    for (int i = 0; i < m->n_layers; i++)
        shared |= uses[i] != 1;
    free(uses);
    if (shared)
        return TE_OK;
    group *gs = NULL;
    int ng = 0, orig_nodes = m->n_nodes;
    te_status st = plan(m, mode, &gs, &ng, err);
    if (st != TE_OK || ng == 0) {
        groups_free(gs, ng);
        return st;
    }
    int n_nodes = m->n_nodes + ng, n_layers = m->n_layers;
    for (int i = 0; i < ng; i++)
        n_layers -= gs[i].n - 1;
    /* everything that can fail first; the model changes only once it all worked */
    int *group_of = malloc((size_t)m->n_nodes * sizeof *group_of);
    te_node *nodes = calloc((size_t)n_nodes, sizeof *nodes);
    te_layer *layers = calloc((size_t)n_layers, sizeof *layers);
    te_layer *fused = calloc((size_t)ng, sizeof *fused);
    int *fused_value = malloc((size_t)ng * sizeof *fused_value);
    int64_t **slice_ints = calloc((size_t)m->n_nodes, sizeof *slice_ints);
    int **fused_in = calloc((size_t)ng, sizeof *fused_in);
    char **fused_node_name = calloc((size_t)ng, sizeof *fused_node_name);
    int built = 0;
    if (!group_of || !nodes || !layers || !fused || !fused_value || !slice_ints || !fused_in || !fused_node_name) {
        st = te_errf(err, TE_ENOMEM, "out of memory fusing layers");
        goto out;
    }
    for (int i = 0; i < m->n_nodes; i++)
        group_of[i] = -1;
    for (; built < ng; built++) {
        const group *g = &gs[built];
        if ((st = build_layer(m, g, &fused[built], err)) != TE_OK)
            goto out;
        const te_node *t = &m->nodes[g->target];
        te_shape sh = m->values[t->out].shape;
        sh.d[channel_axis(m, t)] = fused[built].geom.out_c;
        fused_in[built] = malloc(sizeof *fused_in[built]);
        size_t nl = strlen(fused[built].name) + 1;
        fused_node_name[built] = malloc(nl);
        if (!fused_in[built] || !fused_node_name[built]) {
            built++;
            st = te_errf(err, TE_ENOMEM, "out of memory fusing layers");
            goto out;
        }
        memcpy(fused_node_name[built], fused[built].name, nl);
        fused_in[built][0] = t->in[0];
        /* a value no other node knows: the branches' outputs side by side */
        if ((fused_value[built] = te_model_add_value(m, fused[built].name, &sh, NULL)) < 0) {
            built++;
            st = te_errf(err, TE_ENOMEM, "out of memory fusing layers");
            goto out;
        }
        int64_t c0 = 0;
        for (int k = 0; k < g->n; k++) {
            int j = g->nodes[k];
            const te_node *nj = &m->nodes[j];
            int nd = m->values[nj->out].shape.ndim, ax = channel_axis(m, nj);
            group_of[j] = built;
            if (!(slice_ints[j] = calloc((size_t)(2 * nd), sizeof **slice_ints))) {
                built++;
                st = te_errf(err, TE_ENOMEM, "out of memory fusing layers");
                goto out;
            }
            for (int d = 0; d < nd; d++)
                slice_ints[j][2 * d + 1] = 1;
            slice_ints[j][2 * ax] = c0;
            c0 += m->layers[nj->layer].geom.out_c;
        }
    }
    /* commit: nodes in their order, the fused layer where its first member ran,
     * one Slice per member right after it; layers renumbered in node order */
    int on = 0, ol = 0;
    for (int i = 0; i < m->n_nodes; i++) {
        te_node *nd = &m->nodes[i];
        int gi = group_of[i];
        if (gi < 0) {
            nodes[on] = *nd;
            if (nd->op == TE_OP_LINEAR) {
                layers[ol] = m->layers[nd->layer];
                memset(&m->layers[nd->layer], 0, sizeof m->layers[nd->layer]);
                nodes[on].layer = ol++;
            }
            on++;
            continue;
        }
        const group *g = &gs[gi];
        if (i == g->first) {
            te_node *f = &nodes[on++];
            memset(f, 0, sizeof *f);
            f->op = TE_OP_LINEAR;
            f->name = fused_node_name[gi];
            fused_node_name[gi] = NULL;
            f->n_in = 1;
            f->in = fused_in[gi];
            fused_in[gi] = NULL;
            f->out = fused_value[gi];
            f->layer = ol;
            layers[ol++] = fused[gi];
            memset(&fused[gi], 0, sizeof fused[gi]);
            for (int k = 0; k < g->n; k++) {
                te_node *b = &m->nodes[g->nodes[k]], *s = &nodes[on++];
                memset(s, 0, sizeof *s);
                s->op = TE_OP_SLICE;
                s->name = b->name;
                s->n_in = 1;
                s->in = b->in; /* reused: the same input count */
                s->in[0] = fused_value[gi];
                s->out = b->out;
                s->n_ints = 2 * m->values[b->out].shape.ndim;
                s->ints = slice_ints[g->nodes[k]];
                slice_ints[g->nodes[k]] = NULL;
                free(b->ints);
                te_layer_clear(&m->layers[b->layer]);
                memset(b, 0, sizeof *b);
            }
        }
    }
    free(m->nodes);
    free(m->layers);
    m->nodes = nodes;
    m->layers = layers;
    m->n_nodes = on;
    m->n_layers = ol;
    nodes = NULL;
    layers = NULL;
out:
    for (int i = 0; i < built; i++) {
        te_layer_clear(&fused[i]);
        free(fused_in[i]);
        free(fused_node_name[i]);
    }
    for (int i = 0; slice_ints && i < orig_nodes; i++)
        free(slice_ints[i]);
    free(group_of);
    free(nodes);
    free(layers);
    free(fused);
    free(fused_value);
    free(slice_ints);
    free(fused_in);
    free(fused_node_name);
    groups_free(gs, ng);
    return st;
}
