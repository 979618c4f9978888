//! The teardown stack: registrations are undone in reverse order of registration.
//!
//! A driver's state is a stack of guards. Each guard undoes one registration when it is dropped
//! (unregisters a callback, dereferences an object, frees pool). Pushing a guard records that it
//! was made *after* everything beneath it, and dropping the stack drops the top first, so the
//! teardown order is the reverse of the registration order by construction:
//!
//! ```text
//! let state = Empty
//!     .push(object)          // 1. open the callback object
//!     .push(context)         // 2. allocate the context the callback will use
//!     .push(registration);   // 3. register the callback (uses 1 and 2)
//! drop(state);               // 3, then 2, then 1: unregister before freeing the context,
//!                            // free the context before dereferencing the object
//! ```
//!
//! This is the rule every callback family documents ("unregister before freeing the context") made
//! structural: a guard that depends on another is pushed after it, so it is always undone first.
//!
//! **DriverEntry failure.** Build the stack step by step with `?`: when a step fails, the stack
//! built so far is dropped, in the same reverse order. There is no second, hand-written error path
//! to get wrong.
//!
//! **Unload.** The complete stack is kept in a [`StateSlot`](crate::slot::StateSlot); DriverUnload
//! takes it out and drops it.

/// The empty stack: nothing registered yet.
#[derive(Debug, Default)]
pub struct Empty;

/// A guard `top` registered after everything in `below`.
///
/// Field order is drop order in Rust: `top` is declared first, so it is dropped first.
pub struct Stacked<Below, Top> {
    top: Top,
    below: Below,
}

/// Anything guards can be pushed onto: [`Empty`] or a [`Stacked`].
pub trait Stack: Sized {
    /// Records `top` as registered after everything already on the stack.
    #[must_use = "dropping the stack undoes every registration on it"]
    fn push<Top>(self, top: Top) -> Stacked<Self, Top> {
        Stacked { top, below: self }
    }
}

impl Stack for Empty {}
impl<Below, Top> Stack for Stacked<Below, Top> {}

impl<Below, Top> Stacked<Below, Top> {
    /// The guard registered last.
    pub fn top(&self) -> &Top {
        &self.top
    }

    /// Everything registered before [`top`](Self::top).
    pub fn below(&self) -> &Below {
        &self.below
    }

    /// Takes the top guard off, to undo it on its own (for instance to check something between
    /// two steps of the teardown). The rest stays in order.
    #[must_use = "dropping the parts undoes them"]
    pub fn pop(self) -> (Below, Top) {
        (self.below, self.top)
    }
}

/// The type of a teardown stack, bottom (registered first) to top (registered last):
/// `teardown_stack![Object, Context, Registration]`.
#[macro_export]
macro_rules! teardown_stack {
    ($($guard:ty),+ $(,)?) => { $crate::teardown_stack!(@build $crate::teardown::Empty; $($guard),+) };
    (@build $below:ty; $top:ty) => { $crate::teardown::Stacked<$below, $top> };
    (@build $below:ty; $next:ty, $($rest:ty),+) => {
        $crate::teardown_stack!(@build $crate::teardown::Stacked<$below, $next>; $($rest),+)
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;
    use std::rc::Rc;

    type Log = Rc<RefCell<Vec<&'static str>>>;

    struct Guard(&'static str, Log);
    impl Drop for Guard {
        fn drop(&mut self) {
            self.1.borrow_mut().push(self.0);
        }
    }

    type Three = teardown_stack![Guard, Guard, Guard];

    #[test]
    fn drop_order_is_reverse_of_registration() {
        let log = Log::default();
        let state = Empty
            .push(Guard("object", log.clone()))
            .push(Guard("context", log.clone()))
            .push(Guard("registration", log.clone()));
        assert!(
            log.borrow().is_empty(),
            "nothing is undone while the state lives"
        );
        drop(state);
        assert_eq!(*log.borrow(), ["registration", "context", "object"]);
    }

    /// A DriverEntry that fails at step `fail_at` (1-based) after building what came before.
    fn driver_entry(log: &Log, fail_at: usize) -> Result<Three, &'static str> {
        let step = |n: usize, name: &'static str| {
            if n == fail_at {
                Err("failed")
            } else {
                Ok(Guard(name, log.clone()))
            }
        };
        let state = Empty.push(step(1, "a")?);
        let state = state.push(step(2, "b")?);
        let state = state.push(step(3, "c")?);
        Ok(state)
    }

    #[test]
    fn failing_driver_entry_undoes_what_exists_in_reverse() {
        for (fail_at, expected) in [(1, vec![]), (2, vec!["a"]), (3, vec!["b", "a"])] {
            let log = Log::default();
            assert!(driver_entry(&log, fail_at).is_err());
            assert_eq!(*log.borrow(), expected, "failing at step {fail_at}");
        }
    }

    #[test]
    fn pop_hands_back_the_top_and_keeps_the_rest_in_order() {
        let log = Log::default();
        let state = driver_entry(&log, 0).unwrap();
        let (rest, top) = state.pop();
        drop(top);
        assert_eq!(*log.borrow(), ["c"]);
        drop(rest);
        assert_eq!(*log.borrow(), ["c", "b", "a"]);
    }

    #[test]
    fn successful_driver_entry_then_unload() {
        let log = Log::default();
        let state = driver_entry(&log, 0).unwrap();
        assert_eq!(state.top().0, "c");
        assert_eq!(state.below().top().0, "b");
        drop(state);
        assert_eq!(*log.borrow(), ["c", "b", "a"]);
    }
}
