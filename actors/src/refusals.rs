//! Recording refused login attempts through a [`RefusalTally`] (see its rule in
//! `domain::login`): the first refusal of a window is recorded at once, the others are held and
//! recorded together when the window ends, by a timer on the deciding actor.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;

use crate::audit::Origin;
use crate::commit::record_events;
use crate::context::ActorContext;
use crate::domain::{Event, Millis, RefusalTally, Tallied};
use crate::protocol::ActorError;

/// An actor's refusals in the current window.
#[derive(Default)]
pub(crate) struct Refusals {
    tally: RefusalTally,
    /// The latest refusal held: what the flush records (with the count).
    held: Option<(Event, Origin)>,
}

/// An actor that decides refusals.
pub(crate) trait Refusing: Actor<Context = Context<Self>> {
    fn refusals(&mut self) -> &mut Refusals;
    fn actor_context(&self) -> &Arc<ActorContext>;
}

/// Records or holds the refusal `event` decided at `now`, then answers `reply`.
pub(crate) fn refuse<A: Refusing, R: 'static>(
    actor: &mut A,
    ctx: &mut Context<A>,
    event: Event,
    origin: Origin,
    now: Millis,
    reply: R,
) -> AtomicResponse<A, Result<R, ActorError>> {
    let (tally, tallied) = actor.refusals().tally.refused(now);
    actor.refusals().tally = tally;
    match tallied {
        Tallied::Record { attempts } => {
            let cx = Arc::clone(actor.actor_context());
            let event = event.standing_for(attempts);
            let work = async move { record_events(&cx, now, &origin, &[event]).await.map(|()| reply) };
            AtomicResponse::new(Box::pin(work.into_actor(actor)))
        }
        Tallied::Held { flush_at } => {
            actor.refusals().held = Some((event, origin));
            if let Some(at) = flush_at {
                ctx.run_later(Duration::from_millis(at.0.saturating_sub(now.0)), flush::<A>);
            }
            AtomicResponse::new(Box::pin(fut::ready(Ok(reply))))
        }
    }
}

/// The window's end: records the refusals held in it as one event.
fn flush<A: Refusing>(actor: &mut A, ctx: &mut Context<A>) {
    let (tally, held) = actor.refusals().tally.flushed();
    actor.refusals().tally = tally;
    let Some((event, origin)) = actor.refusals().held.take() else { return };
    if held == 0 {
        return;
    }
    let cx = Arc::clone(actor.actor_context());
    let event = event.standing_for(held);
    let work = async move {
        if let Err(e) = record_events(&cx, cx.clock.now(), &origin, &[event]).await {
            tracing::warn!(error = %e, attempts = held, "refused login attempts could not be recorded");
        }
    };
    ctx.wait(work.into_actor(actor));
}
