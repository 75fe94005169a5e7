/* twinedge-owner deploy: upload a deployment to the edge hosts over gRPC
 * with the owner's credentials (DEPLOY_DIR/owner, from te_pki_deployment). */
#ifndef TE_OWNER_DEPLOY_H
#define TE_OWNER_DEPLOY_H

#include "te_error.h"

/* Send DEPLOY_DIR/edge.bundle to both hosts (Deploy, in chunks) and
 * register every DEPLOY_DIR/hosts/b/devices/<name>.key with EdgeB.
 * edge_a / edge_b: "HOST:PORT"; either may be NULL to skip that host. */
te_status te_owner_deploy(const char *deploy_dir, const char *edge_a, const char *edge_b, te_err *err);

/* The same with the credentials in creds_dir (ca.pem, cert.pem, key.pem). */
te_status te_owner_deploy_with(const char *deploy_dir, const char *creds_dir, const char *edge_a,
                               const char *edge_b, int timeout_ms, te_err *err);

/* Register one device key file with EdgeB. */
te_status te_owner_register_device(const char *creds_dir, const char *edge_b, const char *key_path, int timeout_ms,
                                   te_err *err);

#endif
