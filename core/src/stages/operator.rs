//! Operators' actions on one withdrawal: reprocess and discard (docs/design.md §4). Each runs
//! through the state machine like any stage's decision, takes a reason, and is written to
//! the audit log with the operator's name. Discarding a signed transfer cannot forget it
//! (its nonce is spent and the bytes may still be mined): it records a cancel request that
//! the signer turns into a 0-value self-transfer at the same nonce.

use super::{Decision, PortTypes, Ports, StageError};
use crate::domain::{Status, WithdrawalId};
use crate::machine::{self, Effect, Event};
use crate::ports::*;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ActionOutcome {
    /// The withdrawal moved to this status.
    Moved(Status),
    /// A cancel transaction will compete for the transfer's nonce; the status stays.
    CancelRequested(Status),
    /// A cancel was requested before; the first request stands.
    AlreadyCancelling(Status),
}

impl ActionOutcome {
    /// The name the admin API answers with.
    pub fn name(&self) -> &'static str {
        match self {
            ActionOutcome::Moved(_) => "moved",
            ActionOutcome::CancelRequested(_) => "cancel_requested",
            ActionOutcome::AlreadyCancelling(_) => "already_cancelling",
        }
    }

    /// The withdrawal's status once the action is done.
    pub fn status(&self) -> Status {
        match self {
            ActionOutcome::Moved(s) | ActionOutcome::CancelRequested(s) | ActionOutcome::AlreadyCancelling(s) => *s,
        }
    }
}

/// What an operator does with a withdrawal that waits on a person (a dead-lettered or stuck
/// one): send it back into the pipeline, or give up on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OperatorAction {
    Reprocess,
    Discard,
}

impl OperatorAction {
    pub const ALL: [OperatorAction; 2] = [OperatorAction::Reprocess, OperatorAction::Discard];

    /// The name the admin API's paths use.
    pub fn as_str(self) -> &'static str {
        match self {
            OperatorAction::Reprocess => "reprocess",
            OperatorAction::Discard => "discard",
        }
    }

    pub fn parse(s: &str) -> Option<OperatorAction> {
        OperatorAction::ALL.into_iter().find(|a| a.as_str() == s)
    }

    /// Carries the action out on one withdrawal (`reprocess` or `discard`).
    pub async fn apply<T: PortTypes>(
        self,
        ports: &Ports<T>,
        id: &WithdrawalId,
        actor: &str,
        reason: &str,
    ) -> Result<ActionOutcome, ActionError> {
        match self {
            OperatorAction::Reprocess => reprocess(ports, id, actor, reason).await,
            OperatorAction::Discard => discard(ports, id, actor, reason).await,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ActionError {
    #[error("no withdrawal {0}")]
    NotFound(WithdrawalId),
    /// The withdrawal is not in a status the action applies to (or moved meanwhile).
    #[error("{0}")]
    Conflict(String),
    #[error("a reason is required")]
    MissingReason,
    #[error(transparent)]
    Stage(#[from] StageError),
}

impl From<StoreError> for ActionError {
    fn from(e: StoreError) -> Self {
        ActionError::Stage(e.into())
    }
}

fn check_reason(reason: &str) -> Result<&str, ActionError> {
    let r = reason.trim();
    if r.is_empty() { Err(ActionError::MissingReason) } else { Ok(r) }
}

/// Applies an operator's event to a withdrawal last seen in `from`, then audits it.
async fn act<T: PortTypes>(
    ports: &Ports<T>,
    id: &WithdrawalId,
    from: Status,
    event: Event,
    actor: &str,
    reason: &str,
    (verb, action): (&str, &str),
) -> Result<ActionOutcome, ActionError> {
    let decision = Decision { id: id.clone(), from, event, reason: Some(format!("{verb} by {actor}: {reason}")) };
    let entry = |d: &Decision, to: Status| AuditEntry {
        actor: actor.to_owned(),
        action: action.to_owned(),
        target: format!("withdrawal/{}", d.id),
        reason: Some(reason.to_owned()),
        detail: format!("{} -> {to}", d.from),
    };
    let won = super::apply_audited(ports, actor, vec![decision], Some(&entry)).await?;
    let Some((_, to)) = won.first() else {
        return Err(ActionError::Conflict(format!("withdrawal {id} left {from} meanwhile; look again")));
    };
    Ok(ActionOutcome::Moved(*to))
}

/// Sends a dead-lettered withdrawal back into the pipeline: INVALID to RECEIVED (the signer
/// validates it again), SEND_FAILED to SIGNED (the same signed bytes are broadcast again:
/// never a new nonce, so reprocessing cannot pay twice).
pub async fn reprocess<T: PortTypes>(ports: &Ports<T>, id: &WithdrawalId, actor: &str, reason: &str) -> Result<ActionOutcome, ActionError> {
    let reason = check_reason(reason)?;
    let d = ports.store.get(id).await?.ok_or_else(|| ActionError::NotFound(id.clone()))?;
    let from = d.withdrawal.status;
    if d.cancel.is_some() {
        return Err(ActionError::Conflict(format!("withdrawal {id} was discarded and is being cancelled; it cannot be reprocessed")));
    }
    machine::step(from, Event::Reprocess).map_err(|_| ActionError::Conflict(format!("a {from} withdrawal cannot be reprocessed")))?;
    // The release its dead-lettering owed must be done before it reserves again (the store
    // refuses to move it until then).
    let owed = ports.store.pending_settlements(i64::MAX, Some(vec![id.clone()]), 10).await?;
    super::settle(ports, owed).await?;
    act(ports, id, from, Event::Reprocess, actor, reason, ("reprocessed", "withdrawal.reprocess")).await
}

/// Gives up on a withdrawal: INVALID becomes REJECTED (reservation released); a signed one
/// (SEND_FAILED, or SENT and stuck) gets a cancel request, and is CANCELLED or COMPLETED by
/// whichever of its transactions is mined.
pub async fn discard<T: PortTypes>(ports: &Ports<T>, id: &WithdrawalId, actor: &str, reason: &str) -> Result<ActionOutcome, ActionError> {
    let reason = check_reason(reason)?;
    let d = ports.store.get(id).await?.ok_or_else(|| ActionError::NotFound(id.clone()))?;
    let from = d.withdrawal.status;
    let step =
        machine::step(from, Event::Discard).map_err(|_| ActionError::Conflict(format!("a {from} withdrawal cannot be discarded")))?;
    // A release still owed from its dead-lettering goes first (the store refuses to move
    // it until then).
    let owed = ports.store.pending_settlements(i64::MAX, Some(vec![id.clone()]), 10).await?;
    super::settle(ports, owed).await?;
    if step.effects.contains(&Effect::SignCancel) {
        if d.inclusion.is_some() {
            return Err(ActionError::Conflict(format!("withdrawal {id} is already mined; it will finish on its own")));
        }
        let req = CancelRequest {
            withdrawal_id: id.clone(),
            actor: actor.to_owned(),
            reason: reason.to_owned(),
            requested_at_ms: ports.clock.now_ms(),
        };
        let nonce = d.attempts.last().map(|a| a.nonce);
        let entry = AuditEntry {
            actor: actor.to_owned(),
            action: "withdrawal.discard".to_owned(),
            target: format!("withdrawal/{id}"),
            reason: Some(reason.to_owned()),
            detail: format!("{from}: cancel requested at nonce {nonce:?}"),
        };
        if !ports.store.request_cancel(req, entry).await? {
            return Ok(ActionOutcome::AlreadyCancelling(from));
        }
        tracing::warn!(withdrawal.id = %id, operator = actor, "discard requested: the signer will cancel the transfer at its nonce");
        return Ok(ActionOutcome::CancelRequested(from));
    }
    act(ports, id, from, Event::Discard, actor, reason, ("discarded", "withdrawal.discard")).await
}

/// Stage actors; any other history actor is a person.
const STAGES: [&str; 6] = ["intake", "signer", "sender", "tracker", "reconciler", "bumper"];

/// Approves a withdrawal waiting above its asset's threshold: PENDING_APPROVAL to RECEIVED,
/// and the signer signs it. Four eyes: the approver may not be a person who already acted on
/// it (e.g. the operator who released it from a dead-letter queue).
pub async fn approve<T: PortTypes>(
    ports: &Ports<T>,
    id: &WithdrawalId,
    approver: &str,
    reason: &str,
) -> Result<ActionOutcome, ActionError> {
    let reason = check_reason(reason)?;
    let d = ports.store.get(id).await?.ok_or_else(|| ActionError::NotFound(id.clone()))?;
    let from = d.withdrawal.status;
    machine::step(from, Event::Approved).map_err(|_| ActionError::Conflict(format!("a {from} withdrawal is not waiting for approval")))?;
    if let Some(h) = d.history.iter().find(|h| h.actor == approver && !STAGES.contains(&h.actor.as_str())) {
        return Err(ActionError::Conflict(format!(
            "{approver} already acted on this withdrawal ({} at {}); another approver must approve it",
            h.to, h.at_ms
        )));
    }
    let approval = Approval {
        withdrawal_id: id.clone(),
        approver: approver.to_owned(),
        reason: reason.to_owned(),
        approved_at_ms: ports.clock.now_ms(),
    };
    ports.store.record_approval(approval).await?;
    act(ports, id, from, Event::Approved, approver, reason, ("approved", "withdrawal.approve")).await
}

/// Rejects a withdrawal waiting for approval: REJECTED, reservation released.
pub async fn reject<T: PortTypes>(ports: &Ports<T>, id: &WithdrawalId, approver: &str, reason: &str) -> Result<ActionOutcome, ActionError> {
    let reason = check_reason(reason)?;
    let d = ports.store.get(id).await?.ok_or_else(|| ActionError::NotFound(id.clone()))?;
    let from = d.withdrawal.status;
    machine::step(from, Event::Rejected).map_err(|_| ActionError::Conflict(format!("a {from} withdrawal is not waiting for approval")))?;
    act(ports, id, from, Event::Rejected, approver, reason, ("rejected", "withdrawal.reject")).await
}

/// Pauses or resumes signing for every chain or one; audited.
pub async fn set_signing<T: PortTypes>(
    ports: &Ports<T>,
    chain_id: Option<u64>,
    paused: bool,
    actor: &str,
    reason: &str,
) -> Result<(), ActionError> {
    let reason = check_reason(reason)?;
    if let Some(c) = chain_id
        && !ports.chains.contains_key(&c)
    {
        return Err(ActionError::Conflict(format!("chain {c} is not configured")));
    }
    let control =
        SigningControl { chain_id, paused, actor: actor.to_owned(), reason: reason.to_owned(), updated_at_ms: ports.clock.now_ms() };
    let scope = chain_id.map_or_else(|| "all chains".to_owned(), |c| format!("chain {c}"));
    let entry = AuditEntry {
        actor: actor.to_owned(),
        action: if paused { "signing.pause" } else { "signing.resume" }.to_owned(),
        target: scope.clone(),
        reason: Some(reason.to_owned()),
        detail: format!("signing {} for {scope}", if paused { "paused" } else { "resumed" }),
    };
    ports.store.set_signing_control(control, entry).await?;
    tracing::warn!(operator = actor, scope, paused, reason, "signing pause changed");
    Ok(())
}

/// What a credit call ends with: the journal entry as it stands, and the balance once it is
/// applied (None while it waits for a second person).
#[derive(Debug)]
pub struct CreditAnswer {
    pub credit: CreditRecord,
    pub balance: Option<Balance>,
    /// A repeat of an earlier call with the same key.
    pub repeated: bool,
}

/// An operator credits a user's balance. Journaled first, with its audit row, in one
/// transaction, idempotently per `key` (a retry after a timeout credits once; the same key
/// for another request is a conflict); at or below `needs_second_above` it is applied at
/// once, above it a second person must approve it (`approve_credit`).
#[allow(clippy::too_many_arguments)]
pub async fn credit<T: PortTypes>(
    ports: &Ports<T>,
    key: &str,
    user_id: &str,
    asset: &str,
    amount: crate::domain::Amount,
    reason: &str,
    actor: &str,
    needs_second_above: Option<crate::domain::Amount>,
) -> Result<CreditAnswer, ActionError> {
    let reason = check_reason(reason)?;
    let canonical = format!("v1\n{user_id}\n{asset}\n{}\n{reason}", amount.base_units());
    let request_hash = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(canonical.as_bytes()));
    let needs_second = needs_second_above.is_some_and(|t| amount > t);
    let record = CreditRecord {
        idempotency_key: key.to_owned(),
        request_hash,
        user_id: user_id.to_owned(),
        asset: asset.to_owned(),
        amount,
        reason: reason.to_owned(),
        requested_by: actor.to_owned(),
        approved_by: None,
        state: if needs_second { CreditState::PendingApproval } else { CreditState::Approved },
        created_at_ms: ports.clock.now_ms(),
    };
    let audit = AuditEntry {
        actor: actor.to_owned(),
        action: if needs_second { "balance.credit.request" } else { "balance.credit" }.to_owned(),
        target: format!("user/{user_id}/{asset}"),
        reason: Some(reason.to_owned()),
        detail: format!(
            "credit {key}: {} base units{}",
            amount.base_units(),
            if needs_second { ", waits for a second approver" } else { "" }
        ),
    };
    let (stored, repeated) = match ports.store.record_credit(record, audit).await? {
        CreditOutcome::Created(c) => (c, false),
        CreditOutcome::Existing(c) => (c, true),
        CreditOutcome::Conflict(c) => {
            return Err(ActionError::Conflict(format!(
                "Idempotency-Key {} was already used for another credit (of {} to {})",
                c.idempotency_key, c.asset, c.user_id
            )));
        }
    };
    let balance = apply_one_credit(ports, &stored).await?;
    Ok(CreditAnswer { credit: stored, balance, repeated })
}

/// A second person approves a credit waiting above its threshold; it is then applied.
pub async fn approve_credit<T: PortTypes>(ports: &Ports<T>, key: &str, approver: &str, reason: &str) -> Result<CreditAnswer, ActionError> {
    let reason = check_reason(reason)?;
    let audit = AuditEntry {
        actor: approver.to_owned(),
        action: "balance.credit.approve".to_owned(),
        target: format!("credit/{key}"),
        reason: Some(reason.to_owned()),
        detail: format!("credit {key} approved"),
    };
    let (stored, repeated) = match ports.store.approve_credit(key, approver, audit).await? {
        ApproveCreditOutcome::Approved(c) => (c, false),
        ApproveCreditOutcome::NotPending(c) => (c, true),
        ApproveCreditOutcome::SamePerson => {
            return Err(ActionError::Conflict("a credit is approved by someone other than the operator who asked for it".into()));
        }
        ApproveCreditOutcome::NotFound => return Err(ActionError::Conflict(format!("no credit {key}"))),
    };
    let balance = apply_one_credit(ports, &stored).await?;
    Ok(CreditAnswer { credit: stored, balance, repeated })
}

/// Applies an approved credit to the balance store (once per key there) and marks it
/// applied; a pending one is left alone.
async fn apply_one_credit<T: PortTypes>(ports: &Ports<T>, c: &CreditRecord) -> Result<Option<Balance>, ActionError> {
    match c.state {
        CreditState::PendingApproval => Ok(None),
        CreditState::Approved | CreditState::Applied => {
            let b =
                ports.balances.credit(&credit_id(&c.idempotency_key), &c.user_id, &c.asset, c.amount).await.map_err(StageError::from)?;
            if c.state == CreditState::Approved {
                ports.store.credit_applied(&c.idempotency_key).await?;
            }
            Ok(Some(b))
        }
    }
}

/// The balance store's id of an operator credit.
fn credit_id(key: &str) -> String {
    format!("admin:{}:{key}", key.len())
}

/// Applies approved credits a crash or a balance store outage left in the journal (the
/// reconciler runs it). Returns how many it applied.
pub async fn apply_credits<T: PortTypes>(ports: &Ports<T>) -> Result<usize, StageError> {
    let todo = ports.store.credits_to_apply(200).await?;
    let mut n = 0;
    for c in &todo {
        ports.balances.credit(&credit_id(&c.idempotency_key), &c.user_id, &c.asset, c.amount).await?;
        ports.store.credit_applied(&c.idempotency_key).await?;
        n += 1;
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::OperatorAction;

    #[test]
    fn action_names_round_trip() {
        for a in OperatorAction::ALL {
            assert_eq!(OperatorAction::parse(a.as_str()), Some(a));
        }
        assert_eq!(OperatorAction::parse("Discard"), None);
        assert_eq!(OperatorAction::parse("approve"), None);
    }
}
