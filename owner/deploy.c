/* Upload a deployment to the edge hosts (see deploy.h). */
#include "deploy.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "service.pb-c.h"
#include "te_bundle.h"
#include "te_net_transport.h"

#define DEPLOY_CHUNK (1u << 20)
#define DEPLOY_MAX_BUNDLE ((size_t)1 << 32)
#define DEPLOY_TIMEOUT_MS 120000

static te_status channel_to(const char *addr, const te_net_creds *creds, const char *name, te_net_channel **ch,
                            te_err *err)
{
    te_net_channel_config cc = {addr, creds, name, 0};
    return te_net_channel_new(&cc, ch, err);
}

static te_status send_bundle(te_net_channel *ch, const uint8_t *buf, size_t len, int timeout_ms, te_err *err)
{
    size_t n = (len + DEPLOY_CHUNK - 1) / DEPLOY_CHUNK;
    te_net_msg *msgs = calloc(n ? n : 1, sizeof *msgs);
    uint8_t **packed = calloc(n ? n : 1, sizeof *packed);
    te_status st = TE_OK;
    if (!msgs || !packed)
        st = te_errf(err, TE_ENOMEM, "out of memory");
    for (size_t i = 0; st == TE_OK && i < n; i++) {
        Twinedge__DeployChunk c = TWINEDGE__DEPLOY_CHUNK__INIT;
        c.data.data = (uint8_t *)buf + i * DEPLOY_CHUNK;
        c.data.len = len - i * DEPLOY_CHUNK < DEPLOY_CHUNK ? len - i * DEPLOY_CHUNK : DEPLOY_CHUNK;
        size_t pl = twinedge__deploy_chunk__get_packed_size(&c);
        if (!(packed[i] = malloc(pl))) {
            st = te_errf(err, TE_ENOMEM, "out of memory");
            break;
        }
        msgs[i].data = packed[i];
        msgs[i].len = twinedge__deploy_chunk__pack(&c, packed[i]);
    }
    uint8_t *resp = NULL;
    size_t resp_len = 0;
    if (st == TE_OK)
        st = te_net_client_stream(ch, TE_SVC_DEPLOY, msgs, n, &resp, &resp_len, timeout_ms, err);
    if (st == TE_OK) {
        Twinedge__DeployReply *r = twinedge__deploy_reply__unpack(NULL, resp_len, resp);
        if (!r)
            st = te_errf(err, TE_EFORMAT, "%s sent a malformed DeployReply", te_net_channel_target(ch));
        else
            twinedge__deploy_reply__free_unpacked(r, NULL);
    }
    free(resp);
    for (size_t i = 0; packed && i < n; i++)
        free(packed[i]);
    free(packed);
    free(msgs);
    return st;
}

static te_status register_on(te_net_channel *ch, const char *key_path, int timeout_ms, te_err *err)
{
    te_device_key k;
    te_status st = te_device_key_read(key_path, &k, err);
    if (st != TE_OK)
        return st;
    Twinedge__DeviceKeyMsg m = TWINEDGE__DEVICE_KEY_MSG__INIT;
    m.device_id = k.device_id;
    m.deployment_id = k.deployment_id;
    m.key.data = k.key;
    m.key.len = TE_KEY_BYTES;
    uint8_t buf[256];
    size_t len = twinedge__device_key_msg__get_packed_size(&m);
    if (len > sizeof buf) {
        memset(&k, 0, sizeof k);
        return te_errf(err, TE_EINVAL, "device key message too large");
    }
    twinedge__device_key_msg__pack(&m, buf);
    memset(&k, 0, sizeof k);
    uint8_t *resp = NULL;
    size_t resp_len = 0;
    st = te_net_unary(ch, TE_SVC_REGISTER_DEVICE, buf, len, &resp, &resp_len, timeout_ms, err);
    memset(buf, 0, sizeof buf);
    free(resp);
    if (st != TE_OK)
        return te_err_wrap(err, "registering %s", key_path);
    return TE_OK;
}

/* The owner's tool exits right after a deploy: gRPC's threads must be done
 * with our channels first (te_net.h), unless the caller holds gRPC itself. */
static void release_net(int owned)
{
    if (owned)
        te_net_quiesce(TE_NET_QUIESCE_MS);
}

te_status te_owner_register_device(const char *creds_dir, const char *edge_b, const char *key_path, int timeout_ms,
                                   te_err *err)
{
    te_net_creds creds;
    te_status st = te_net_creds_load(creds_dir, &creds, err);
    if (st != TE_OK)
        return st;
    int owns = !te_net_in_use();
    te_net_channel *ch = NULL;
    if ((st = channel_to(edge_b, &creds, TE_CN_EDGE_B, &ch, err)) == TE_OK)
        st = register_on(ch, key_path, timeout_ms > 0 ? timeout_ms : DEPLOY_TIMEOUT_MS, err);
    te_net_channel_free(ch);
    te_net_creds_free(&creds);
    release_net(owns);
    return st;
}

te_status te_owner_deploy_with(const char *deploy_dir, const char *creds_dir, const char *edge_a, const char *edge_b,
                               int timeout_ms, te_err *err)
{
    char path[4200];
    if (timeout_ms <= 0)
        timeout_ms = DEPLOY_TIMEOUT_MS;
    snprintf(path, sizeof path, "%s/edge.bundle", deploy_dir);
    uint8_t *bundle = NULL;
    size_t len = 0;
    te_status st = te_file_read(path, DEPLOY_MAX_BUNDLE, &bundle, &len, err);
    if (st != TE_OK)
        return st;
    te_net_creds creds;
    if ((st = te_net_creds_load(creds_dir, &creds, err)) != TE_OK) {
        free(bundle);
        return st;
    }
    const char *addr[2] = {edge_a, edge_b}, *names[2] = {TE_CN_EDGE_A, TE_CN_EDGE_B};
    int owns = !te_net_in_use();
    te_net_channel *ch[2] = {NULL, NULL};
    for (int i = 0; i < 2 && st == TE_OK; i++) {
        if (!addr[i])
            continue;
        if ((st = channel_to(addr[i], &creds, names[i], &ch[i], err)) == TE_OK &&
            (st = send_bundle(ch[i], bundle, len, timeout_ms, err)) != TE_OK)
            te_err_wrap(err, "deploying to Edge%c", i ? 'B' : 'A');
    }
    if (st == TE_OK && ch[1]) {
        char dir[4200];
        snprintf(dir, sizeof dir, "%s/hosts/b/devices", deploy_dir);
        DIR *d = opendir(dir);
        struct dirent *e;
        while (d && st == TE_OK && (e = readdir(d)) != NULL) {
            size_t n = strlen(e->d_name);
            if (n <= 4 || strcmp(e->d_name + n - 4, ".key") != 0)
                continue;
            char kp[4500];
            snprintf(kp, sizeof kp, "%s/%s", dir, e->d_name);
            st = register_on(ch[1], kp, timeout_ms, err);
        }
        if (d)
            closedir(d);
    }
    te_net_channel_free(ch[0]);
    te_net_channel_free(ch[1]);
    te_net_creds_free(&creds);
    free(bundle);
    release_net(owns);
    return st;
}

te_status te_owner_deploy(const char *deploy_dir, const char *edge_a, const char *edge_b, te_err *err)
{
    char creds[4200];
    snprintf(creds, sizeof creds, "%s/owner", deploy_dir);
    return te_owner_deploy_with(deploy_dir, creds, edge_a, edge_b, 0, err);
}
