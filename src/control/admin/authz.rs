//! Who may do what: every route names one [`Perm`] in the route table, and this file alone
//! says which roles hold it. Object scope (a token's groups; a developer's own keys) is
//! checked by the control plane, which answers 404 `not_found` for what a token may not see.

use super::{auth, err, AdminState};
use crate::control::Role;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Perm {
    /// No token needed (load-balancer probes).
    Open,
    Metrics,
    Reload,
    ReadKeys,
    CreateKeys,
    /// Regenerate, disable, enable, revoke (a developer: its own keys).
    ManageKeys,
    /// PATCH and move.
    EditKeys,
    BatchKeys,
    ReadGroups,
    /// Pause / resume / quarantine and bulk key actions.
    WriteGroups,
    Tokens,
    /// The spend routes (a scoped token's answers cover its groups).
    ReadSpend,
    /// Invoices: the roles that read spend (a scoped token's invoices carry its groups'
    /// lines only).
    ReadInvoices,
    /// The audit trail (a scoped token sees its groups' events).
    ReadAudit,
    /// The audit chain check walks every event: unscoped admins only.
    VerifyAudit,
    /// Who the calling token is: any valid token.
    Whoami,
    /// The loaded policy's summary and the problems in the file on disk (file paths and
    /// every group's definition): admins, like reload.
    ReadPolicy,
    /// Reconciliation results: providers are shared by every group, so unscoped admins and
    /// viewers only (a scoped token is refused by the route).
    ReadReconciliation,
    /// Run the reconciliation now: admins.
    RunReconciliation,
    /// Log sinks' state (shared by every group): unscoped admins and viewers.
    ReadLogSinks,
}

impl Perm {
    pub(crate) fn allows(self, role: Role) -> bool {
        use Role::*;
        match self {
            Perm::Open | Perm::Whoami => true,
            Perm::Metrics
            | Perm::Reload
            | Perm::Tokens
            | Perm::VerifyAudit
            | Perm::ReadPolicy
            | Perm::RunReconciliation => role == Admin,
            Perm::ReadReconciliation | Perm::ReadLogSinks => matches!(role, Admin | Viewer),
            Perm::ReadKeys => true,
            Perm::CreateKeys | Perm::ManageKeys => matches!(role, Admin | GroupAdmin | Developer),
            Perm::EditKeys | Perm::BatchKeys | Perm::WriteGroups => {
                matches!(role, Admin | GroupAdmin)
            }
            Perm::ReadGroups | Perm::ReadSpend | Perm::ReadInvoices | Perm::ReadAudit => {
                matches!(role, Admin | GroupAdmin | Viewer)
            }
        }
    }
}

/// The route layer: authenticate, then check the route's permission (403 `forbidden`).
/// The caller's [`crate::control::Actor`] is handed to the handler as an extension.
pub(crate) async fn authorize(
    State((state, perm)): State<(AdminState, Perm)>,
    mut req: Request,
    next: Next,
) -> Response {
    if perm == Perm::Open {
        return next.run(req).await;
    }
    let actor = match auth::actor(&state, req.headers()) {
        Ok(a) => a,
        Err(r) => return *r,
    };
    if !perm.allows(actor.role) {
        return err(
            403,
            "forbidden",
            &format!("a {} token may not do this", actor.role.as_str()),
        );
    }
    req.extensions_mut().insert(actor);
    next.run(req).await
}

/// The permission matrix (role × route) as a Markdown table, from the route table itself
/// (the README carries it; a test keeps the two equal).
pub fn matrix() -> String {
    let mut s = String::from(
        "| route | admin | group_admin | viewer | developer |\n|---|---|---|---|---|\n",
    );
    for (method, path, perm) in super::route_perms() {
        s.push_str(&format!("| `{method} {path}` |"));
        for role in Role::ALL {
            let cell = match (perm.allows(role), role, perm) {
                (true, _, Perm::Open) => "open",
                (true, _, Perm::Whoami) => "yes",
                (true, Role::Developer, Perm::ReadKeys | Perm::CreateKeys | Perm::ManageKeys) => {
                    "own keys"
                }
                (true, Role::Admin, _) => "yes",
                (true, _, Perm::ReadReconciliation | Perm::ReadLogSinks) => "unscoped only",
                (true, _, _) => "its groups",
                (false, _, _) => "–",
            };
            s.push_str(&format!(" {cell} |"));
        }
        s.push('\n');
    }
    s
}
