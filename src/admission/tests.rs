use super::*;
use crate::clock::ManualClock;
use crate::policy::config::{Budget, BudgetPeriod, Limits};
use std::num::{NonZeroU32, NonZeroU64};

fn nz(n: u64) -> Option<NonZeroU64> {
    NonZeroU64::new(n)
}

fn scope(layer: Layer, id: &str) -> ScopeKey {
    ScopeKey {
        layer,
        id: id.into(),
    }
}

fn setup() -> (Arc<ManualClock>, Arc<Admission>) {
    let clock = Arc::new(ManualClock::new(1_700_000_000_000));
    let adm = Arc::new(Admission::new(clock.clone(), None, 1));
    (clock, adm)
}

fn req<'a>(
    org: &'a Limits,
    group: &'a Limits,
    key: &'a Limits,
    key_id: &str,
    est: u64,
    cost: u64,
) -> AdmitRequest<'a> {
    AdmitRequest {
        layers: [
            LayerLimits {
                scope: scope(Layer::Org, "o"),
                limits: org,
                alert_thresholds: &[],
            },
            LayerLimits {
                scope: scope(Layer::Group, "g"),
                limits: group,
                alert_thresholds: &[],
            },
            LayerLimits {
                scope: scope(Layer::Key, key_id),
                limits: key,
                alert_thresholds: &[],
            },
        ],
        extra: vec![],
        est_tokens: est,
        worst_cost_micros: cost,
        clamp: None,
    }
}

#[test]
fn layers_are_separate_pools() {
    // Two keys of one group, key rpm 5, group rpm 6: 6 admitted in all.
    let (_c, adm) = setup();
    let none = Limits::default();
    let group = Limits {
        rpm: nz(6),
        ..Default::default()
    };
    let key = Limits {
        rpm: nz(5),
        ..Default::default()
    };
    let mut admitted = vec![];
    let mut refusals = vec![];
    for i in 0..20 {
        let k = if i % 2 == 0 { "k1" } else { "k2" };
        match adm.admit(&req(&none, &group, &key, k, 0, 0)) {
            Ok(r) => admitted.push(r),
            Err(e) => refusals.push(e),
        }
    }
    assert_eq!(admitted.len(), 6);
    assert!(refusals.iter().all(|e| e.code() == "rate_limit_exceeded"));
    assert!(
        refusals[0].to_string().contains("group g rpm 6"),
        "{}",
        refusals[0]
    );
    assert!(refusals[0]
        .retry_after()
        .is_some_and(|s| (59..=61).contains(&s)));
}

#[test]
fn narrowest_scope_is_named() {
    let (_c, adm) = setup();
    let org = Limits {
        rpm: nz(1),
        ..Default::default()
    };
    let key = Limits {
        rpm: nz(1),
        ..Default::default()
    };
    let none = Limits::default();
    let _r = adm.admit(&req(&org, &none, &key, "k", 0, 0)).unwrap();
    let e = adm.admit(&req(&org, &none, &key, "k", 0, 0)).err().unwrap();
    assert!(e.to_string().contains("key k rpm 1"), "{e}");
}

#[test]
fn tokens_are_reserved_then_settled() {
    let (clock, adm) = setup();
    let none = Limits::default();
    let key = Limits {
        tpm: nz(1000),
        ..Default::default()
    };
    let r = adm.admit(&req(&none, &none, &key, "k", 800, 0)).unwrap();
    // The reservation blocks a second large estimate...
    let e = adm
        .admit(&req(&none, &none, &key, "k", 800, 0))
        .err()
        .unwrap();
    assert_eq!(e.code(), "token_limit_exceeded");
    // ...until it is settled with the real (smaller) usage.
    r.settle(Some(Usage {
        tokens: 100,
        cost_micros: 0,
    }));
    let r2 = adm.admit(&req(&none, &none, &key, "k", 800, 0)).unwrap();
    r2.settle(Some(Usage {
        tokens: 900,
        cost_micros: 0,
    }));
    assert!(adm.admit(&req(&none, &none, &key, "k", 1, 0)).is_err());
    clock.advance(61_000);
    assert!(adm.admit(&req(&none, &none, &key, "k", 1000, 0)).is_ok());
}

#[test]
fn parallelism_slots_come_back_on_drop() {
    let (_c, adm) = setup();
    let none = Limits::default();
    let key = Limits {
        max_parallel: NonZeroU32::new(2),
        ..Default::default()
    };
    let a = adm.admit(&req(&none, &none, &key, "k", 0, 0)).unwrap();
    let _b = adm.admit(&req(&none, &none, &key, "k", 0, 0)).unwrap();
    let e = adm
        .admit(&req(&none, &none, &key, "k", 0, 0))
        .err()
        .unwrap();
    assert_eq!(e.code(), "concurrency_limit_exceeded");
    drop(a);
    assert!(adm.admit(&req(&none, &none, &key, "k", 0, 0)).is_ok());
}

#[test]
fn budget_under_concurrency_admits_exactly_what_fits() {
    let (_c, adm) = setup();
    let none = Limits::default();
    let group = Limits {
        budget: Some(Budget {
            limit_micros: 10_000,
            period: BudgetPeriod::Monthly,
            soft_micros: None,
        }),
        ..Default::default()
    };
    // 200 threads at once, each worst case 300 µ$: exactly 33 fit in 10 000 µ$.
    let results: Vec<_> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..200)
            .map(|i| {
                let adm = adm.clone();
                let (none, group) = (&none, &group);
                s.spawn(move || {
                    adm.admit(&req(none, group, none, &format!("k{i}"), 0, 300))
                        .map(|r| {
                            r.settle(Some(Usage {
                                tokens: 0,
                                cost_micros: 290,
                            }))
                        })
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let ok = results.iter().filter(|r| r.is_ok()).count();
    // Settled spend (290 each) lets a few more in as the first ones settle; but never
    // more than the budget in worst-case terms at any moment, and never over in spend.
    let (_, spent, reserved) = adm.inspect(&scope(Layer::Group, "g")).unwrap();
    assert_eq!(reserved, 0);
    assert!(spent <= 10_000, "spent {spent}");
    assert_eq!(spent, ok as u64 * 290);
    assert!(ok >= 33, "{ok}");
    let e = results.iter().find_map(|r| r.as_ref().err()).unwrap();
    assert_eq!(e.code(), "budget_exceeded");
}

#[test]
fn exact_budget_with_unsettled_reservations() {
    let (_c, adm) = setup();
    let none = Limits::default();
    let key = Limits {
        budget: Some(Budget {
            limit_micros: 1_000,
            period: BudgetPeriod::Daily,
            soft_micros: Some(500),
        }),
        ..Default::default()
    };
    let held: Vec<_> = (0..10)
        .filter_map(|_| adm.admit(&req(&none, &none, &key, "k", 0, 100)).ok())
        .collect();
    assert_eq!(held.len(), 10);
    assert!(adm.admit(&req(&none, &none, &key, "k", 0, 100)).is_err());
    // Dropping unsettled charges the reservation: a stream that ended without usage.
    drop(held);
    let (_, spent, reserved) = adm.inspect(&scope(Layer::Key, "k")).unwrap();
    assert_eq!((spent, reserved), (1_000, 0));
    let events = adm.take_events();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].event, "budget.threshold");
    assert_eq!(adm.take_dirty().len(), 1);
}

#[test]
fn budget_resets_at_the_period_boundary() {
    let (clock, adm) = setup();
    let none = Limits::default();
    let key = Limits {
        budget: Some(Budget {
            limit_micros: 100,
            period: BudgetPeriod::Daily,
            soft_micros: None,
        }),
        ..Default::default()
    };
    adm.admit(&req(&none, &none, &key, "k", 0, 100))
        .unwrap()
        .settle(None);
    let e = adm
        .admit(&req(&none, &none, &key, "k", 0, 1))
        .err()
        .unwrap();
    let wait = e.retry_after().unwrap();
    assert!(wait <= 86_400);
    clock.advance(wait * 1000);
    assert!(adm.admit(&req(&none, &none, &key, "k", 0, 100)).is_ok());
}

#[test]
fn idle_entries_are_swept() {
    let (clock, adm) = setup();
    let none = Limits::default();
    let key = Limits {
        rpm: nz(10),
        ..Default::default()
    };
    for i in 0..100 {
        adm.admit(&req(&none, &none, &key, &format!("k{i}"), 0, 0))
            .unwrap()
            .cancel();
    }
    assert_eq!(adm.sweep(), 102);
    clock.advance(600_000);
    assert_eq!(adm.sweep(), 0);
}

mod model {
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    enum Op {
        Admit { est: u64, cost: u64 },
        Settle { idx: usize, tokens: u64, cost: u64 },
        Advance(u64),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0u64..400, 0u64..300).prop_map(|(est, cost)| Op::Admit { est, cost }),
            (0usize..50, 0u64..400, 0u64..300).prop_map(|(idx, tokens, cost)| Op::Settle {
                idx,
                tokens,
                cost
            }),
            (0u64..20_000).prop_map(Op::Advance),
        ]
    }

    proptest! {
        /// Against a simple reference: spend + reservations never exceed the budget, and
        /// settled spend equals the sum of what was settled.
        #[test]
        fn budget_matches_reference(ops in proptest::collection::vec(op(), 1..200)) {
            let (clock, adm) = setup();
            let none = Limits::default();
            let key = Limits {
                tpm: nz(2_000),
                budget: Some(Budget { limit_micros: 5_000, period: BudgetPeriod::Never, soft_micros: None }),
                ..Default::default()
            };
            let mut open: Vec<(Reservation, u64)> = vec![];
            let mut spent = 0u64;
            let mut reserved = 0u64;
            for op in ops {
                match op {
                    Op::Admit { est, cost } => {
                        let fits = spent + reserved + cost <= 5_000;
                        match adm.admit(&req(&none, &none, &key, "k", est, cost)) {
                            Ok(r) => {
                                prop_assert!(fits);
                                reserved += cost;
                                open.push((r, cost));
                            }
                            Err(e) => prop_assert!(!fits || e.code() == "token_limit_exceeded", "{e}"),
                        }
                    }
                    Op::Settle { idx, tokens, cost } if !open.is_empty() => {
                        let (r, worst) = open.remove(idx % open.len());
                        let cost = cost.min(worst);
                        r.settle(Some(Usage { tokens, cost_micros: cost }));
                        reserved -= worst;
                        spent += cost;
                    }
                    Op::Settle { .. } => {}
                    Op::Advance(ms) => clock.advance(ms),
                }
                let (_, s, r) = adm.inspect(&scope(Layer::Key, "k")).unwrap_or((0, 0, 0));
                prop_assert_eq!((s, r), (spent, reserved));
                prop_assert!(s + r <= 5_000);
            }
        }
    }
}

#[test]
fn shadow_limits_count_report_and_never_refuse() {
    // Group: shadow rpm 2, shadow budget of 1000 µ$ (soft at 500); key: enforced rpm 4.
    let (_c, adm) = setup();
    let none = Limits::default();
    let mut shadow = crate::policy::config::Shadow::default();
    shadow.set(crate::policy::config::Shadow::RPM);
    shadow.set(crate::policy::config::Shadow::BUDGET);
    let group = Limits {
        rpm: nz(2),
        budget: Some(Budget {
            limit_micros: 1_000,
            period: BudgetPeriod::Monthly,
            // An enforced budget would announce crossing this.
            soft_micros: Some(500),
        }),
        shadow,
        ..Default::default()
    };
    let key = Limits {
        rpm: nz(4),
        ..Default::default()
    };
    let mut hits = vec![];
    for i in 0..4 {
        let r = adm.admit(&req(&none, &group, &key, "k", 10, 400)).unwrap();
        // The enforced key limit is the one the headers speak of.
        assert_eq!(r.rate.requests, Some((4, 3 - i)));
        hits.push(r.shadow.iter().map(|h| h.code).collect::<Vec<_>>());
        r.settle(Some(Usage {
            tokens: 10,
            cost_micros: 400,
        }));
    }
    assert_eq!(hits[0], Vec::<&str>::new());
    assert_eq!(hits[1], Vec::<&str>::new());
    // Third: over the shadow rpm, and 800 spent + 400 worst case is over the shadow budget.
    assert_eq!(hits[2], vec!["rate_limit_exceeded", "budget_exceeded"]);
    assert_eq!(hits[3], vec!["rate_limit_exceeded", "budget_exceeded"]);
    // The enforced key rpm still refuses the fifth.
    assert!(matches!(
        adm.admit(&req(&none, &group, &key, "k", 10, 400)),
        Err(GatewayError::RateLimitExceeded { .. })
    ));
    // Spend was tracked against the shadow budget, but no budget event was announced.
    assert_eq!(adm.inspect(&scope(Layer::Group, "g")).unwrap().1, 1_600);
    assert!(adm.take_events().is_empty());
}

/// After a restart the period's spend comes back from the store; a threshold it already
/// passes was announced by the process that stored it and is not announced again.
#[test]
fn thresholds_passed_before_a_restart_are_not_announced_again() {
    struct Stored(u64);
    impl SpendStore for Stored {
        fn load_spend(&self, _: &ScopeKey, _: BudgetPeriod, _: u64) -> u64 {
            self.0
        }
    }
    let none = Limits::default();
    let key = Limits {
        budget: Some(Budget {
            limit_micros: 1_000,
            period: BudgetPeriod::Daily,
            soft_micros: Some(500),
        }),
        ..Default::default()
    };
    for (stored, announced) in [(600, 0), (400, 1)] {
        let clock = Arc::new(ManualClock::new(1_700_000_000_000));
        let adm = Arc::new(Admission::new(clock, Some(Arc::new(Stored(stored))), 1));
        adm.admit(&req(&none, &none, &key, "k", 0, 100))
            .unwrap()
            .settle(None);
        assert_eq!(adm.take_events().len(), announced, "stored {stored}");
    }
}

#[test]
fn slots_taken_before_the_body_count_once_and_come_back() {
    let (_c, adm) = setup();
    let none = Limits::default();
    let group = Limits {
        max_parallel: NonZeroU32::new(2),
        rpm: nz(100),
        ..Default::default()
    };
    let r = req(&none, &group, &none, "k1", 0, 0);
    // Two slots held (bodies being read): a third request is refused on its header.
    let a = adm.hold(&r.layers).unwrap();
    let b = adm.hold(&r.layers).unwrap();
    let e = adm.hold(&r.layers).err().unwrap();
    assert_eq!(e.code(), "concurrency_limit_exceeded");
    assert!(e.to_string().contains("group g max_parallel 2"), "{e}");
    // A held slot is taken over by the reservation, not counted again.
    let ra = adm.admit_held(&r, a).unwrap();
    assert_eq!(adm.inspect(&scope(Layer::Group, "g")).unwrap().0, 2);
    // A request refused after its body (here: no slot left for an unheld admit) gives its
    // slot back when dropped.
    drop(b);
    assert_eq!(adm.inspect(&scope(Layer::Group, "g")).unwrap().0, 1);
    ra.cancel();
    assert_eq!(adm.inspect(&scope(Layer::Group, "g")).unwrap().0, 0);
    // A window refusal after the body releases the held slot too.
    let tight = Limits {
        max_parallel: NonZeroU32::new(2),
        rpm: nz(1),
        ..Default::default()
    };
    let r = req(&none, &none, &tight, "k2", 0, 0);
    let first = adm.admit_held(&r, adm.hold(&r.layers).unwrap()).unwrap();
    let held = adm.hold(&r.layers).unwrap();
    assert_eq!(
        adm.admit_held(&r, held).err().unwrap().code(),
        "rate_limit_exceeded"
    );
    assert_eq!(adm.inspect(&scope(Layer::Key, "k2")).unwrap().0, 1);
    first.cancel();
}

fn with_more(mut l: Limits, token_budget: Option<u64>, patterns: &[(&str, Limits)]) -> Limits {
    use crate::policy::config::{MoreLimits, PatternLimits, TokenBudget};
    let entries: Vec<PatternLimits> = patterns
        .iter()
        .map(|(p, lim)| PatternLimits {
            pattern: (*p).into(),
            glob: globset::Glob::new(p).unwrap().compile_matcher(),
            limits: lim.clone(),
            scope_id: (*p).into(),
        })
        .collect();
    l.more = MoreLimits::new(
        token_budget.map(|limit| TokenBudget {
            limit,
            period: BudgetPeriod::Monthly,
        }),
        entries.into_boxed_slice(),
    );
    l
}

/// The pools of `limits`' patterns matching `model`, as account::admit builds them.
fn pools<'a>(id: &str, limits: &'a Limits, model: &str) -> Vec<LayerLimits<'a>> {
    let mut l = limits.clone();
    l.bind(id);
    limits
        .model_limits()
        .iter()
        .zip(
            l.model_limits()
                .iter()
                .map(|e| e.scope_id.clone())
                .collect::<Vec<_>>(),
        )
        .filter(|(e, _)| e.glob.is_match(model))
        .map(|(e, scope_id)| LayerLimits {
            scope: ScopeKey {
                layer: Layer::Key,
                id: scope_id,
            },
            limits: &e.limits,
            alert_thresholds: &[],
        })
        .collect()
}

#[test]
fn a_pattern_is_a_pool_of_its_own_and_is_named() {
    let (_c, adm) = setup();
    let none = Limits::default();
    let key = with_more(
        Limits {
            rpm: nz(5),
            ..Default::default()
        },
        None,
        &[
            (
                "gpt-4o*",
                Limits {
                    rpm: nz(2),
                    ..Default::default()
                },
            ),
            (
                "gpt-*",
                Limits {
                    rpm: nz(3),
                    ..Default::default()
                },
            ),
        ],
    );
    let admit = |model: &str| {
        let mut r = req(&none, &none, &key, "k", 0, 0);
        r.extra = pools("k", &key, model);
        adm.admit(&r)
    };
    // gpt-4o matches both patterns: the tighter (2) refuses the third, naming the pattern.
    let _a = admit("gpt-4o").unwrap();
    let _b = admit("gpt-4o-mini").unwrap();
    let e = admit("gpt-4o").err().unwrap();
    assert_eq!(e.code(), "rate_limit_exceeded");
    assert!(
        e.to_string()
            .contains(r#"key k model_limits "gpt-4o*" rpm 2"#),
        "{e}"
    );
    // gpt-4.1 matches only gpt-*, whose pool has one left (3 - 2); then the key's overall
    // pool (5) still has room for other models.
    let _c = admit("gpt-4.1").unwrap();
    let e = admit("gpt-4.1").err().unwrap();
    assert!(
        e.to_string().contains(r#"model_limits "gpt-*" rpm 3"#),
        "{e}"
    );
    let _d = admit("claude").unwrap();
    let _e = admit("claude").unwrap();
    let e = admit("claude").err().unwrap();
    assert!(e.to_string().contains("key k rpm 5"), "{e}");
}

#[test]
fn token_budget_reserves_then_settles_and_refuses_with_its_code() {
    let (_c, adm) = setup();
    let none = Limits::default();
    let key = with_more(Limits::default(), Some(1000), &[]);
    let r = adm.admit(&req(&none, &none, &key, "k", 600, 0)).unwrap();
    let e = adm
        .admit(&req(&none, &none, &key, "k", 600, 0))
        .err()
        .unwrap();
    assert_eq!(e.code(), "token_budget_exceeded");
    assert!(e.to_string().contains("key k token_budget 1000"), "{e}");
    assert!(e.retry_after().is_some());
    r.settle(Some(Usage {
        tokens: 100,
        cost_micros: 0,
    }));
    // 100 used: 900 left.
    let r = adm.admit(&req(&none, &none, &key, "k", 900, 0)).unwrap();
    r.settle(Some(Usage {
        tokens: 850,
        cost_micros: 0,
    }));
    assert!(adm.admit(&req(&none, &none, &key, "k", 51, 0)).is_err());
    let ok = adm.admit(&req(&none, &none, &key, "k", 50, 0)).unwrap();
    drop(ok); // unsettled: charged its reservation
    assert!(adm.admit(&req(&none, &none, &key, "k", 1, 0)).is_err());
    // The flush writes the tokens under the key's token scope.
    let rows = adm.take_dirty();
    let tokens = rows
        .iter()
        .find(|(s, _, _, _)| s.id.ends_with("tokens"))
        .expect("a token row");
    assert_eq!(tokens.3, 1000);
}

#[test]
fn a_token_budget_starts_from_the_store() {
    struct Stored;
    impl SpendStore for Stored {
        fn load_spend(&self, scope: &ScopeKey, _: BudgetPeriod, _: u64) -> u64 {
            if scope.id.ends_with("tokens") {
                990
            } else {
                0
            }
        }
    }
    let clock = Arc::new(ManualClock::new(1_700_000_000_000));
    let adm = Arc::new(Admission::new(clock, Some(Arc::new(Stored)), 1));
    let none = Limits::default();
    let key = with_more(Limits::default(), Some(1000), &[]);
    assert!(adm.admit(&req(&none, &none, &key, "k", 11, 0)).is_err());
    assert!(adm.admit(&req(&none, &none, &key, "k", 10, 0)).is_ok());
}

#[test]
fn the_clamp_lowers_the_output_to_what_the_tightest_budget_pays() {
    let (_c, adm) = setup();
    let budget = |usd_micros| Limits {
        budget: Some(Budget {
            limit_micros: usd_micros,
            period: BudgetPeriod::Monthly,
            soft_micros: None,
        }),
        ..Default::default()
    };
    // $1 per million output tokens = 1 µ$ a token; input free. Group: 500 µ$, key: 300 µ$.
    let (group, key, none) = (budget(500), budget(300), Limits::default());
    let clamp = |named, output| Clamp {
        input_tokens: 10,
        output_tokens: output,
        named,
        input_micros_per_mtok: 0,
        output_micros_per_mtok: 1_000_000,
    };
    let admit = |c: Clamp| {
        let mut r = req(
            &none,
            &group,
            &key,
            "k",
            10 + c.output_tokens,
            c.output_tokens,
        );
        r.clamp = Some(c);
        adm.admit(&r)
    };
    // Asked for 1000: the key can pay 300.
    let r = admit(clamp(true, 1000)).unwrap();
    assert_eq!(r.clamped_max_tokens, Some(300));
    assert_eq!((r.est_tokens, r.worst_cost), (310, 300));
    // Asked for 100 with 0 left in flight: nothing left, refused as a budget refusal.
    let e = admit(clamp(true, 100)).err().unwrap();
    assert_eq!(e.code(), "budget_exceeded");
    r.settle(Some(Usage {
        tokens: 110,
        cost_micros: 100,
    }));
    // 200 left; a request naming 50 fits: unchanged.
    let r = admit(clamp(true, 50)).unwrap();
    assert_eq!(r.clamped_max_tokens, None);
    r.settle(Some(Usage {
        tokens: 10,
        cost_micros: 0,
    }));
    // Naming none (default 4096): sent with what is left (200).
    let r = admit(clamp(false, 4096)).unwrap();
    assert_eq!(r.clamped_max_tokens, Some(200));
    // ... and with plenty left, with the default it reserves.
    drop(r);
    let (group, key) = (budget(1_000_000_000), budget(1_000_000_000));
    let mut rq = req(&none, &group, &key, "k2", 4106, 4096);
    rq.clamp = Some(clamp(false, 4096));
    assert_eq!(adm.admit(&rq).unwrap().clamped_max_tokens, Some(4096));
}

#[test]
fn the_clamp_counts_token_budgets_too() {
    let (_c, adm) = setup();
    let none = Limits::default();
    let key = with_more(Limits::default(), Some(100), &[]);
    let mut r = req(&none, &none, &key, "k", 1010, 0);
    r.clamp = Some(Clamp {
        input_tokens: 10,
        output_tokens: 1000,
        named: true,
        input_micros_per_mtok: 0,
        output_micros_per_mtok: 0,
    });
    let got = adm.admit(&r).unwrap();
    assert_eq!((got.clamped_max_tokens, got.est_tokens), (Some(90), 100));
}
