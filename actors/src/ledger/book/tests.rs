//! The ledger arithmetic, case by case.

use super::*;

fn id(n: u32) -> TaskId {
    TaskId(format!("task-{n}"))
}

#[test]
fn without_a_cap_everything_is_granted_and_spend_adds_up() {
    let mut b = Book::new(None);
    for n in 0..5 {
        assert_eq!(b.reserve(&id(n), None), Reservation::Granted);
    }
    for n in 0..5 {
        assert!(b.settle(&id(n), 0.25, 0, true).is_empty());
    }
    let r = b.report();
    assert_eq!(r.spend_usd, 1.25);
    assert_eq!(r.budget_remaining, None);
    assert!(!r.exhausted);
}

#[test]
fn live_spend_crossing_the_cap_exhausts_the_budget_once() {
    let mut b = Book::new(Some(1.0));
    assert_eq!(b.reserve(&id(1), None), Reservation::Granted);
    assert_eq!(b.reserve(&id(2), None), Reservation::Granted);
    assert!(b.live(&id(1), 0.4, 0).is_empty());
    let e = b.live(&id(2), 0.6, 0);
    assert!(matches!(e.as_slice(), [Effect::Exhausted(_)]), "{e:?}");
    assert!(
        b.live(&id(2), 0.7, 0).is_empty(),
        "reported once while it runs"
    );
    // What the interrupted turns really cost: a little more than what was seen live.
    b.settle(&id(1), 0.45, 0, true);
    b.settle(&id(2), 0.65, 0, true);
    assert!((b.report().spend_usd - 1.10).abs() < 1e-12);
    assert!(matches!(
        b.reserve(&id(3), None),
        Reservation::Refused(m) if m.contains("$1.10 spent of the $1.00 cap")
    ));
}

#[test]
fn reservations_hold_back_tasks_that_would_not_fit() {
    let mut b = Book::new(Some(1.0));
    b.reserve(&id(1), None);
    b.settle(&id(1), 0.4, 0, true); // mean spend is now 0.4
    assert_eq!(b.reserve(&id(2), None), Reservation::Granted); // 0.4 + 0.4 <= 1.0
    assert_eq!(b.reserve(&id(3), None), Reservation::Wait); // 0.4 + 0.4 + 0.4 > 1.0
    b.settle(&id(2), 0.1, 0, true);
    // Nothing runs and something is left: a task may try, the cap still bounds it.
    assert_eq!(b.reserve(&id(3), None), Reservation::Granted);
}

#[test]
fn a_task_over_its_own_cap_is_stopped_without_exhausting_the_pool() {
    let mut b = Book::new(None);
    b.reserve(&id(1), Some(0.05));
    assert!(b.live(&id(1), 0.01, 0).is_empty());
    let e = b.live(&id(1), 0.05, 0);
    assert!(matches!(e.as_slice(), [Effect::TaskOverBudget(t, _)] if *t == id(1)));
    assert!(b.live(&id(1), 0.06, 0).is_empty());
    assert_eq!(b.reserve(&id(2), None), Reservation::Granted);
}

#[test]
fn dollars_read_well() {
    assert_eq!(usd(0.012), "$0.012");
    assert_eq!(usd(0.02), "$0.02");
    assert_eq!(usd(10.0), "$10.00");
    assert_eq!(usd(0.0000123), "$0.000012");
}

#[test]
fn settling_past_the_cap_exhausts_it_too() {
    let mut b = Book::new(Some(0.5));
    b.reserve(&id(1), None);
    let e = b.settle(&id(1), 0.5, 0, true);
    assert!(matches!(e.as_slice(), [Effect::Exhausted(_)]));
    assert_eq!(b.report().budget_remaining, Some(0.0));
}

#[test]
fn a_window_takes_the_stores_higher_figure_and_only_for_its_own_start() {
    let period = Period {
        name: "day",
        start_ms: 86_400_000,
        end_ms: Some(2 * 86_400_000),
    };
    let mut book = Book::with_history(Some(1.0), period, 0.25, 0.0, 0.0);
    // Another server's spend in the same window: the book follows, and the cap holds.
    assert!(book.seen_window(86_400_000, 0.5, 0).is_empty());
    assert_eq!(book.report().spend_usd, 0.5);
    // A lower figure (this server's settle not yet committed) changes nothing.
    assert!(book.seen_window(86_400_000, 0.4, 0).is_empty());
    assert_eq!(book.report().spend_usd, 0.5);
    // A figure for another window is ignored.
    assert!(book.seen_window(0, 5.0, 0).is_empty());
    assert_eq!(book.report().spend_usd, 0.5);
    // Past the cap: exhausted, naming the window's end.
    let e = book.seen_window(86_400_000, 1.2, 0);
    assert!(
        matches!(e.as_slice(), [Effect::Exhausted(why)] if why.contains("1970-01-03T00:00:00Z")),
        "{e:?}"
    );
    // The next window starts from nothing and is open again.
    assert!(book.roll(2 * 86_400_000, 3 * 86_400_000));
    assert_eq!(book.report().spend_usd, 0.0);
    assert!(!book.report().exhausted);
}
