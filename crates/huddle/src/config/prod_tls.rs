//! Under `HUDDLE_ENV=prod` no datastore connection goes without a verified
//! TLS: a weaker Postgres `sslmode` or a plain Redis URL is a start error
//! naming the setting, not a silent `prefer` that an attacker on the path
//! downgrades.

use huddle_db::tls::{TlsMode, url_tls_mode};

use super::Global;

/// Which datastores a command connects to.
#[derive(Debug, Clone, Copy)]
pub struct Uses {
    pub postgres: bool,
    pub redis: bool,
}

impl Global {
    /// `Ok` outside prod. In prod: Postgres `sslmode=verify-full`, or
    /// `verify-ca` — Cloud SQL's server certificates name the instance, not
    /// the IP a pod dials, so `verify-full` cannot pass there by IP, while
    /// `verify-ca` still pins the chain to the provider's (per-instance) CA
    /// the operator mounted; Redis over `rediss://` only, and no Sentinel
    /// (its connections are plain TCP in this build).
    pub fn refuse_plain_datastores_in_prod(&self, uses: Uses) -> Result<(), String> {
        if self.env != "prod" {
            return Ok(());
        }
        if uses.postgres {
            let mode = url_tls_mode(&self.database_url).map_err(|e| e.to_string())?;
            if !matches!(mode, TlsMode::VerifyFull | TlsMode::VerifyCa) {
                return Err(format!(
                    "HUDDLE_DATABASE_URL has sslmode {mode:?}; HUDDLE_ENV=prod needs \
                     sslmode=verify-full (or verify-ca) with sslrootcert=<the provider's CA \
                     bundle> (deploy/README.md, \"TLS to the datastores\")"
                ));
            }
        }
        if uses.redis {
            self.refuse_plain_redis()?;
        }
        Ok(())
    }

    fn refuse_plain_redis(&self) -> Result<(), String> {
        let config = self.cache_config();
        if !config.sentinels.is_empty() {
            return Err(
                "HUDDLE_REDIS_SENTINELS: Sentinel connections are plain TCP in this \
                        build; HUDDLE_ENV=prod refuses them (use a TLS Redis URL or cluster)"
                    .to_owned(),
            );
        }
        let (setting, urls) = if config.cluster_nodes.is_empty() {
            ("HUDDLE_REDIS_URL", vec![config.redis_url])
        } else {
            ("HUDDLE_REDIS_CLUSTER_NODES", config.cluster_nodes)
        };
        match urls.iter().find(|u| !u.starts_with("rediss://")) {
            Some(plain) => Err(format!(
                "{setting} has {:?}; HUDDLE_ENV=prod needs rediss:// (TLS, the CA in SSL_CERT_FILE)",
                redact(plain)
            )),
            None => Ok(()),
        }
    }
}

/// The scheme and host of a Redis URL, never its password.
fn redact(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let host = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
    format!("{scheme}://{host}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests::global;

    const BOTH: Uses = Uses {
        postgres: true,
        redis: true,
    };

    fn prod(extra: &[&str]) -> Global {
        let mut args = vec!["--env", "prod"];
        args.extend_from_slice(extra);
        global(&args).unwrap()
    }

    const PG_OK: &str =
        "postgres://h@db:5432?sslmode=verify-full&sslrootcert=/etc/huddle/ca/ca.pem";

    /// Seen to fail with the check returning `Ok(())` at once: the local
    /// defaults (`prefer`, `redis://`) started under prod.
    #[test]
    fn prod_refuses_unverified_postgres_and_plain_redis() {
        let defaults = prod(&[]).refuse_plain_datastores_in_prod(BOTH);
        assert!(defaults.unwrap_err().contains("HUDDLE_DATABASE_URL"));
        for mode in ["disable", "prefer", "require"] {
            let url = format!("postgres://h@db?sslmode={mode}");
            let e = prod(&["--database-url", &url, "--redis-url", "rediss://r:6379"])
                .refuse_plain_datastores_in_prod(BOTH)
                .unwrap_err();
            assert!(e.contains("sslmode=verify-full"), "{mode}: {e}");
        }
        let e = prod(&["--database-url", PG_OK, "--redis-url", "redis://:pw@r:6379"])
            .refuse_plain_datastores_in_prod(BOTH)
            .unwrap_err();
        assert!(e.contains("HUDDLE_REDIS_URL") && !e.contains("pw"), "{e}");
        let nodes = "rediss://a:6379,redis://b:6379";
        let e = prod(&["--database-url", PG_OK, "--redis-cluster-nodes", nodes])
            .refuse_plain_datastores_in_prod(BOTH)
            .unwrap_err();
        assert!(e.contains("HUDDLE_REDIS_CLUSTER_NODES"), "{e}");
        let e = prod(&["--database-url", PG_OK, "--redis-sentinels", "s:26379"])
            .refuse_plain_datastores_in_prod(BOTH)
            .unwrap_err();
        assert!(e.contains("HUDDLE_REDIS_SENTINELS"), "{e}");
    }

    #[test]
    fn prod_takes_verified_tls_and_other_envs_take_anything() {
        let nodes = "rediss://a:6379,rediss://b:6379";
        for url in [
            PG_OK,
            "postgres://h@db?sslmode=verify-ca&sslrootcert=/ca.pem",
        ] {
            prod(&["--database-url", url, "--redis-cluster-nodes", nodes])
                .refuse_plain_datastores_in_prod(BOTH)
                .unwrap();
        }
        // The gateway dials no Postgres: its URL is not checked.
        prod(&["--redis-url", "rediss://r:6379"])
            .refuse_plain_datastores_in_prod(Uses {
                postgres: false,
                redis: true,
            })
            .unwrap();
        for env in ["dev", "test"] {
            global(&["--env", env])
                .unwrap()
                .refuse_plain_datastores_in_prod(BOTH)
                .unwrap();
        }
    }
}
