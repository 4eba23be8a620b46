//! Users and their passwords, as Postgres keeps them: a SCRAM-SHA-256
//! verifier per user (`SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`),
//! never the password itself, in the catalog's store.
//!
//! `CREATE USER` / `CREATE ROLE ... LOGIN PASSWORD '...'`, `ALTER USER ...
//! PASSWORD`, `DROP USER` change them; `--superuser NAME` with
//! `SLUICE_PASSWORD` makes the first one at start. With `--auth password`
//! the wire server asks every client for its password over SCRAM
//! ([`ScramUsers`]); a wrong password and an unknown user fail alike
//! (`28P01`), so the answer never tells whether a user exists.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use parking_lot::RwLock;
use pgwire::api::auth::sasl::scram::{gen_salted_password, ScramSecret};
use pgwire::api::auth::{AuthSource, LoginInfo, Password};
use pgwire::error::{PgWireError, PgWireResult};
use serde::{Deserialize, Serialize};

use crate::error::{sqlstate, Error, Result};
use crate::state::Store;

/// PBKDF2 iterations of new verifiers (Postgres's default).
const ITERATIONS: usize = 4096;
const METHOD: &str = "SCRAM-SHA-256";
/// Where a user is kept in the store's catalog.
const KEY_PREFIX: &str = "user/";

/// One user (a role, in Postgres's words).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct User {
    pub name: String,
    /// The SCRAM verifier of its password; None: it has none, and cannot
    /// log in with one.
    pub verifier: Option<String>,
    pub superuser: bool,
    /// Whether it may log in (`CREATE USER` says so, `CREATE ROLE` not).
    pub login: bool,
}

/// What `CREATE` or `ALTER USER` sets; None leaves a setting as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserOptions {
    /// `PASSWORD 'text'` (Some(Some)), `PASSWORD NULL` (Some(None)).
    pub password: Option<Option<String>>,
    pub superuser: Option<bool>,
    pub login: Option<bool>,
}

/// The users of one server, read from the store at start and kept in memory.
pub struct Users {
    store: Arc<Store>,
    users: RwLock<BTreeMap<String, User>>,
}

impl std::fmt::Debug for Users {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Users")
            .field("count", &self.users.read().len())
            .finish()
    }
}

impl Users {
    pub fn open(store: Arc<Store>) -> Result<Users> {
        let mut users = BTreeMap::new();
        for (key, value) in store.scan_meta(KEY_PREFIX)? {
            let user: User = serde_json::from_slice(&value).map_err(|e| {
                Error::external(format!(
                    "could not read the user \"{key}\" from the store: {e}"
                ))
            })?;
            users.insert(user.name.clone(), user);
        }
        Ok(Users {
            store,
            users: RwLock::new(users),
        })
    }

    pub fn list(&self) -> Vec<User> {
        self.users.read().values().cloned().collect()
    }

    pub fn get(&self, name: &str) -> Option<User> {
        self.users.read().get(name).cloned()
    }

    /// Whether any user can log in with a password.
    pub fn any_can_log_in(&self) -> bool {
        self.users
            .read()
            .values()
            .any(|u| u.login && u.verifier.is_some())
    }

    fn save(&self, user: User) -> Result<()> {
        let bytes = serde_json::to_vec(&user).expect("a user serializes");
        self.store
            .put_meta(&format!("{KEY_PREFIX}{}", user.name), &bytes)?;
        self.users.write().insert(user.name.clone(), user);
        Ok(())
    }

    /// `CREATE USER` (`login` defaults to true) or `CREATE ROLE` (false).
    pub fn create(&self, name: &str, options: &UserOptions, login: bool) -> Result<()> {
        if self.get(name).is_some() {
            return Err(Error::user(
                sqlstate::DUPLICATE_OBJECT,
                format!("role \"{name}\" already exists"),
            ));
        }
        let mut user = User {
            name: name.to_string(),
            verifier: None,
            superuser: false,
            login,
        };
        apply(&mut user, options)?;
        self.save(user)
    }

    pub fn alter(&self, name: &str, options: &UserOptions) -> Result<()> {
        let mut user = self.get(name).ok_or_else(|| undefined_role(name))?;
        apply(&mut user, options)?;
        self.save(user)
    }

    /// `DROP USER`; false if it did not exist (and `if_exists`).
    pub fn remove(&self, name: &str, if_exists: bool) -> Result<bool> {
        if self.get(name).is_none() {
            return if if_exists {
                Ok(false)
            } else {
                Err(undefined_role(name))
            };
        }
        self.store.delete_meta(&format!("{KEY_PREFIX}{name}"))?;
        self.users.write().remove(name);
        Ok(true)
    }

    /// Makes `name` a superuser who logs in with `password` (`--superuser`).
    pub fn ensure_superuser(&self, name: &str, password: &str) -> Result<()> {
        let options = UserOptions {
            password: Some(Some(password.to_string())),
            superuser: Some(true),
            login: Some(true),
        };
        match self.get(name) {
            Some(_) => self.alter(name, &options),
            None => self.create(name, &options, true),
        }
    }
}

fn undefined_role(name: &str) -> Error {
    Error::user(
        sqlstate::UNDEFINED_OBJECT,
        format!("role \"{name}\" does not exist"),
    )
}

fn apply(user: &mut User, options: &UserOptions) -> Result<()> {
    if let Some(password) = &options.password {
        user.verifier = match password {
            None => None,
            // A verifier given as is (psql's \password sends one).
            Some(p) if parse_verifier(p).is_some() => Some(p.clone()),
            Some(p) if p.is_empty() => {
                return Err(Error::invalid_parameter("empty password"));
            }
            Some(p) => Some(scram_verifier(p)),
        };
    }
    if let Some(s) = options.superuser {
        user.superuser = s;
    }
    if let Some(l) = options.login {
        user.login = l;
    }
    Ok(())
}

/// The SCRAM-SHA-256 verifier of a password, with a fresh random salt, in
/// Postgres's text form.
pub fn scram_verifier(password: &str) -> String {
    let salt: [u8; 16] = rand::random();
    verifier_with_salt(password, &salt, ITERATIONS)
}

fn verifier_with_salt(password: &str, salt: &[u8], iterations: usize) -> String {
    let salted = gen_salted_password(password, salt, iterations);
    match ScramSecret::verifier_from_salted_password(salt.to_vec(), salted, iterations) {
        ScramSecret::Verifier {
            salt,
            iterations,
            stored_key,
            server_key,
        } => format!(
            "{METHOD}${iterations}:{}${}:{}",
            BASE64.encode(salt),
            BASE64.encode(stored_key),
            BASE64.encode(server_key)
        ),
        ScramSecret::SaltedPassword { .. } => {
            unreachable!("verifier_from_salted_password returns a verifier")
        }
    }
}

/// Reads a verifier in Postgres's text form.
fn parse_verifier(text: &str) -> Option<ScramSecret> {
    let rest = text.strip_prefix(METHOD)?.strip_prefix('$')?;
    let (params, keys) = rest.split_once('$')?;
    let (iterations, salt) = params.split_once(':')?;
    let (stored, server) = keys.split_once(':')?;
    Some(ScramSecret::Verifier {
        salt: BASE64.decode(salt).ok()?,
        iterations: iterations.parse().ok().filter(|i| *i > 0)?,
        stored_key: BASE64.decode(stored).ok()?,
        server_key: BASE64.decode(server).ok()?,
    })
}

/// The users as pgwire's SCRAM exchange asks for them.
#[derive(Debug)]
pub struct ScramUsers {
    pub users: Arc<Users>,
    /// Salts the made-up verifiers of unknown users, so that each gets the
    /// same salt on every try, as a real user would.
    mock_seed: [u8; 16],
}

impl ScramUsers {
    pub fn new(users: Arc<Users>) -> Self {
        ScramUsers {
            users,
            mock_seed: rand::random(),
        }
    }

    /// A verifier no password matches, for a user who does not exist or
    /// may not log in: the exchange runs to its end and fails there.
    fn mock(&self, name: &str) -> ScramSecret {
        use std::hash::{Hash, Hasher};
        let mut salt = Vec::with_capacity(16);
        for part in 0..2u8 {
            let mut h = std::collections::hash_map::DefaultHasher::new();
            (self.mock_seed, name, part).hash(&mut h);
            salt.extend_from_slice(&h.finish().to_be_bytes());
        }
        ScramSecret::Verifier {
            salt,
            iterations: ITERATIONS,
            stored_key: rand::random::<[u8; 32]>().to_vec(),
            server_key: rand::random::<[u8; 32]>().to_vec(),
        }
    }
}

#[async_trait]
impl AuthSource for ScramUsers {
    async fn get_password(&self, login: &LoginInfo) -> PgWireResult<Password> {
        Err(PgWireError::InvalidPassword(
            login.user().unwrap_or_default().to_string(),
        ))
    }

    async fn get_scram_secret(&self, login: &LoginInfo) -> PgWireResult<(ScramSecret, Option<()>)> {
        let name = login.user().unwrap_or_default();
        let secret = self
            .users
            .get(name)
            .filter(|u| u.login)
            .and_then(|u| u.verifier.as_deref().and_then(parse_verifier))
            .unwrap_or_else(|| self.mock(name));
        Ok((secret, None))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verifiers_match_postgres() {
        // Computed independently (Python's hashlib: PBKDF2-HMAC-SHA256,
        // then RFC 5802's StoredKey and ServerKey) for the password
        // "sluice" with this salt and 4096 iterations.
        let salt = BASE64.decode("c2FsdHNhbHRzYWx0c2FsdA==").unwrap();
        let ours = verifier_with_salt("sluice", &salt, 4096);
        assert_eq!(
            ours,
            "SCRAM-SHA-256$4096:c2FsdHNhbHRzYWx0c2FsdA==$5nROdAC9hBqtd7ydPcwz3WdYnxgL1QTTOwgvOHgNwcw=:jE9wXkhDzWXotQR7VKJyznJoZEjfo/zcgYTQAjAZ19k="
        );
        // Parsing reads back what was written.
        let Some(ScramSecret::Verifier {
            salt: s,
            iterations,
            ..
        }) = parse_verifier(&ours)
        else {
            panic!()
        };
        assert_eq!((s, iterations), (salt, 4096));
        assert!(parse_verifier("md5abc").is_none());
        assert!(parse_verifier("SCRAM-SHA-256$0:AA==$AA==:AA==").is_none());
    }

    #[test]
    fn fresh_verifiers_differ_by_salt() {
        assert_ne!(scram_verifier("x"), scram_verifier("x"));
    }
}
