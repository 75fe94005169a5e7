/* The deployment's certificate authority (mutual TLS between the parties).
 *
 * Every party gets an EC P-256 key and a certificate signed by the
 * deployment CA; its common name is its identity on the network: "edge-a",
 * "edge-b", "owner", "device:<name>".  Host certificates also name
 * "localhost", 127.0.0.1 and their CN as DNS names, so loopback tests and a
 * TLS target-name override of "edge-a"/"edge-b" verify.  Each party's
 * directory holds ca.pem, cert.pem and key.pem (0600). */
#ifndef TE_PKI_H
#define TE_PKI_H

#include "te_error.h"

/* Create dir/ca.pem and dir/ca.key (a new CA), creating dir if needed.
 * Refuses to overwrite an existing CA. */
te_status te_pki_init_ca(const char *dir, te_err *err);

/* Issue a certificate for common_name signed by the CA in ca_dir; writes
 * out_dir/ca.pem, out_dir/cert.pem, out_dir/key.pem (out_dir created if
 * needed).  is_host adds the host names (see above). */
te_status te_pki_issue(const char *ca_dir, const char *common_name, int is_host, const char *out_dir,
                       te_err *err);

/* A deployment's credentials: deploy_dir/ca (created unless present),
 * deploy_dir/hosts/a (edge-a), deploy_dir/hosts/b (edge-b) and
 * deploy_dir/owner (owner). */
te_status te_pki_deployment(const char *deploy_dir, te_err *err);

/* A device's credentials, "device:<name>", in device_dir/tls. */
te_status te_pki_device(const char *deploy_dir, const char *name, const char *device_dir, te_err *err);

#endif
