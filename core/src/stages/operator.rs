//! Operators' actions on one withdrawal: reprocess and discard (DESIGN.md §4). Each runs
//! through the state machine like any stage's decision, takes a reason, and is written to
//! the audit log with the operator's name. Discarding a signed transfer cannot forget it
//! (its nonce is spent and the bytes may still be mined): it records a cancel request that
//! the signer turns into a 0-value self-transfer at the same nonce.

use super::{Decision, PortTypes, Ports, StageError, apply};
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

async fn audit<T: PortTypes>(ports: &Ports<T>, actor: &str, action: &str, id: &WithdrawalId, reason: &str, detail: String) {
    let entry = AuditEntry {
        actor: actor.to_owned(),
        action: action.to_owned(),
        target: format!("withdrawal/{id}"),
        reason: Some(reason.to_owned()),
        detail,
    };
    if let Err(e) = ports.store.audit(entry).await {
        // The action is done; losing its audit row must be loud.
        tracing::error!(error = %e, operator = actor, action, withdrawal.id = %id, "audit log write failed after an operator action");
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
    let won = apply(ports, actor, vec![decision]).await?;
    let Some((_, to)) = won.first() else {
        return Err(ActionError::Conflict(format!("withdrawal {id} left {from} meanwhile; look again")));
    };
    audit(ports, actor, action, id, reason, format!("{from} -> {to}")).await;
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
        if !ports.store.request_cancel(req).await? {
            return Ok(ActionOutcome::AlreadyCancelling(from));
        }
        let nonce = d.attempts.last().map(|a| a.nonce);
        audit(ports, actor, "withdrawal.discard", id, reason, format!("{from}: cancel requested at nonce {nonce:?}")).await;
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
    ports.store.set_signing_control(control).await?;
    let scope = chain_id.map_or_else(|| "all chains".to_owned(), |c| format!("chain {c}"));
    let entry = AuditEntry {
        actor: actor.to_owned(),
        action: if paused { "signing.pause" } else { "signing.resume" }.to_owned(),
        target: scope.clone(),
        reason: Some(reason.to_owned()),
        detail: format!("signing {} for {scope}", if paused { "paused" } else { "resumed" }),
    };
    if let Err(e) = ports.store.audit(entry).await {
        tracing::error!(error = %e, operator = actor, "audit log write failed after a signing pause change");
    }
    tracing::warn!(operator = actor, scope, paused, reason, "signing pause changed");
    Ok(())
}
