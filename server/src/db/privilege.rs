//! Least privilege on PostgreSQL: the role that serves may append to the audit trail and read it, nothing
//! more, so whoever holds the server's credentials cannot rewrite what it recorded.
//!
//! The table's owner can disable the append-only trigger, update a row and re-hash the tail; a role with only
//! `INSERT` and `SELECT` on `d_audit_event` cannot (PostgreSQL checks ownership for `ALTER TABLE … DISABLE
//! TRIGGER` and the privilege for `UPDATE` / `DELETE` / `TRUNCATE` before any trigger runs). So the schema
//! is owned by the role that runs `phr-server migrate`, which hands the serving role what it needs with
//! `migrate --app-role <role>` ([`Db::grant_app_role`]): all data manipulation on the working tables, only
//! `INSERT`/`SELECT` on the audit trail, read-only on the migrations' bookkeeping. `serve` then asks the
//! database what its own role may do ([`Db::privilege_report`]) and warns loudly when it owns the audit table
//! or may change its rows; it never migrates when nothing is pending, which a serving role could not do.

use super::{Db, DbError};

/// The audit table whose rows only the owner's role may ever change.
const AUDIT_TABLE: &str = "d_audit_event";

/// Privileges on the audit table that a serving role must not hold.
const FORBIDDEN: [&str; 4] = ["UPDATE", "DELETE", "TRUNCATE", "REFERENCES"];

/// What the connected role may do to the audit trail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrivilegeReport {
    /// The role the server connected as (`current_user`).
    pub role: String,
    /// Whether that role owns `d_audit_event` (or is a superuser): it can disable the append-only trigger.
    pub owns_audit_table: bool,
    /// Privileges beyond `INSERT`/`SELECT` the role holds on the table (`UPDATE`, `DELETE`, …).
    pub excess: Vec<&'static str>,
}

impl PrivilegeReport {
    /// The warning to print at start-up, or `None` when the role holds exactly what it needs.
    pub fn warning(&self) -> Option<String> {
        if !self.owns_audit_table && self.excess.is_empty() {
            return None;
        }
        let what = if self.owns_audit_table {
            format!("owns {AUDIT_TABLE} (or is a superuser) and can disable its append-only trigger")
        } else {
            format!("holds {} on {AUDIT_TABLE}", self.excess.join(", "))
        };
        Some(format!(
            "PHR_DATABASE_URL connects as role {:?}, which {what}: whoever holds these credentials can rewrite the \
             audit trail. Serve as a role with INSERT and SELECT only on {AUDIT_TABLE}: create it (CREATE ROLE \
             phr_app LOGIN PASSWORD '…'), run `phr-server migrate --app-role phr_app` as the owner, and point \
             PHR_DATABASE_URL at phr_app (README: \"Least privilege on PostgreSQL\")",
            self.role
        ))
    }
}

/// Why the serving role could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum GrantError {
    #[error(
        "--app-role {0:?}: a role name is 1 to 63 lower-case letters, digits or '_', starting with a letter or '_'"
    )]
    BadName(String),
    #[error(
        "--app-role: least privilege is a PostgreSQL setting; SQLite has no roles (its file's owner is the only one)"
    )]
    NotPostgres,
    #[error(
        "--app-role {0:?}: no such role; create it first as the database owner: CREATE ROLE {0} LOGIN PASSWORD '…'"
    )]
    NoSuchRole(String),
    #[error("--app-role {0:?}: that is the role running the migration, which owns the tables; name a separate role")]
    SameRole(String),
    #[error(transparent)]
    Db(#[from] DbError),
}

impl From<sqlx::Error> for GrantError {
    fn from(error: sqlx::Error) -> Self {
        GrantError::Db(DbError::Sql(error))
    }
}

/// The statements that give `role` what serving needs and nothing on the audit trail beyond appending and
/// reading. `role` must already be a validated identifier.
fn grant_statements(role: &str) -> Vec<String> {
    vec![
        format!("GRANT USAGE ON SCHEMA public TO \"{role}\""),
        format!("GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO \"{role}\""),
        format!("GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO \"{role}\""),
        format!("REVOKE ALL ON {AUDIT_TABLE} FROM \"{role}\""),
        format!("GRANT SELECT, INSERT ON {AUDIT_TABLE} TO \"{role}\""),
        format!("REVOKE ALL ON _sqlx_migrations FROM \"{role}\""),
        format!("GRANT SELECT ON _sqlx_migrations TO \"{role}\""),
    ]
}

fn valid_role_name(role: &str) -> bool {
    let mut chars = role.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_lowercase() || c == '_');
    first_ok && role.len() <= 63 && role.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

impl Db {
    /// Gives `role` the serving privileges on the migrated schema, in one transaction (see the module text).
    pub async fn grant_app_role(&self, role: &str) -> Result<(), GrantError> {
        if !valid_role_name(role) {
            return Err(GrantError::BadName(role.to_owned()));
        }
        let Db::Postgres(pool) = self else { return Err(GrantError::NotPostgres) };
        let mut tx = pool.begin().await?;
        let (exists, current): (bool, String) =
            sqlx::query_as("SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1), current_user::text")
                .bind(role)
                .fetch_one(&mut *tx)
                .await?;
        if !exists {
            return Err(GrantError::NoSuchRole(role.to_owned()));
        }
        if current == role {
            return Err(GrantError::SameRole(role.to_owned()));
        }
        for statement in grant_statements(role) {
            sqlx::query(sqlx::AssertSqlSafe(statement)).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// What the connected role may do to the audit table; `None` on SQLite, which has no roles.
    pub async fn privilege_report(&self) -> Result<Option<PrivilegeReport>, DbError> {
        let Db::Postgres(pool) = self else { return Ok(None) };
        let (role, owns): (String, bool) = sqlx::query_as(
            "SELECT current_user::text, \
                    pg_has_role(current_user, c.relowner, 'USAGE') OR r.rolsuper \
             FROM pg_class c, pg_roles r \
             WHERE c.oid = to_regclass($1) AND r.rolname = current_user",
        )
        .bind(AUDIT_TABLE)
        .fetch_one(pool)
        .await?;
        let mut excess = Vec::new();
        for privilege in FORBIDDEN {
            let held: bool = sqlx::query_scalar("SELECT has_table_privilege($1, $2)")
                .bind(AUDIT_TABLE)
                .bind(privilege)
                .fetch_one(pool)
                .await?;
            if held {
                excess.push(privilege);
            }
        }
        Ok(Some(PrivilegeReport { role, owns_audit_table: owns, excess }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_names_are_plain_identifiers() {
        for good in ["phr_app", "_x", "a1"] {
            assert!(valid_role_name(good), "{good}");
        }
        for bad in ["", "1a", "Phr", "a-b", "a\"; DROP TABLE x; --", &"a".repeat(64)] {
            assert!(!valid_role_name(bad), "{bad}");
        }
    }

    #[test]
    fn only_a_role_with_exactly_insert_and_select_gets_no_warning() {
        let exact = PrivilegeReport { role: "phr_app".into(), owns_audit_table: false, excess: vec![] };
        assert_eq!(exact.warning(), None);
        let owner = PrivilegeReport { owns_audit_table: true, ..exact.clone() };
        assert!(owner.warning().is_some_and(|w| w.contains("owns d_audit_event")));
        let broad = PrivilegeReport { excess: vec!["UPDATE", "DELETE"], ..exact };
        assert!(broad.warning().is_some_and(|w| w.contains("holds UPDATE, DELETE on d_audit_event")));
    }
}
