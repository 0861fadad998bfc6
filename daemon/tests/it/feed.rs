//! The change feed over HTTP (`GET /v1/withdrawals?updated_after=`): a client pages through
//! its withdrawals' status changes with the cursor each answer gives, signed like every
//! request (query string included), and bad queries are refused with problem+json.

use super::body;
use super::harness::*;
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::Duration;
use withdraw_core::testing::Anvil;

async fn page(d: &Daemon, query: &str) -> (u16, Value) {
    let (s, _, v) = d.intake_call("GET", &format!("/v1/withdrawals{query}"), None, b"", 0, SECRET).await;
    (s, v)
}

#[tokio::test]
async fn a_client_follows_its_changes_with_the_cursor_and_bad_queries_are_refused() {
    let anvil = Anvil::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(&anvil, dir.path(), &fast_env(), &[]).await;
    d.credit("feed", "1").await;
    let mut ids = Vec::new();
    for (i, user) in ["feed", "feed", "feed-broke"].iter().enumerate() {
        let (s, v) = d.submit(&format!("feed-{i}"), &body(user, &dest(0xfd, i), "0.1")).await;
        assert_eq!(s, 202, "{v}");
        ids.push(v["id"].as_str().unwrap().to_owned());
    }
    let settled = d.wait_settled(&ids, Duration::from_secs(60)).await;
    let finals: Vec<&str> = settled.iter().map(|w| w["status"].as_str().unwrap()).collect();
    assert_eq!(finals, ["COMPLETED", "COMPLETED", "INVALID"]);

    // Two at a time, from the start, until a page is empty.
    let mut per: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let q = match &cursor {
            Some(c) => format!("?updated_after={c}&limit=2"),
            None => "?limit=2".to_owned(),
        };
        let (s, v) = page(&d, &q).await;
        assert_eq!(s, 200, "{v}");
        let changes = v["changes"].as_array().unwrap();
        assert!(changes.len() <= 2, "{v}");
        let next = v["next"].as_str().unwrap().to_owned();
        if changes.is_empty() {
            assert_eq!(Some(&next), cursor.as_ref(), "nothing new: the same cursor back");
            break;
        }
        for c in changes {
            let id = c["withdrawal"]["id"].as_str().unwrap().to_owned();
            per.entry(id).or_default().push(c["status"].as_str().unwrap().to_owned());
        }
        assert_eq!(changes.last().unwrap()["cursor"].as_str(), Some(next.as_str()), "next is the last change's cursor");
        cursor = Some(next);
        pages += 1;
    }
    assert!(pages >= 5, "ten changes, two a page: {pages}");
    let paid = ["RECEIVED", "SIGNED", "SENT", "COMPLETED"];
    assert_eq!(per[&ids[0]], paid, "{per:?}");
    assert_eq!(per[&ids[1]], paid, "{per:?}");
    assert_eq!(per[&ids[2]], ["RECEIVED", "INVALID"], "{per:?}");

    // Bad queries: problem+json, never a page.
    for (q, why) in [
        ("?updated_after=yesterday", "updated_after must be a cursor"),
        ("?limit=0", "limit must be 1-1000"),
        ("?limit=5000", "limit must be 1-1000"),
        ("?since=1", "unknown query parameter"),
    ] {
        let (s, ct, v) = d.intake_call("GET", &format!("/v1/withdrawals{q}"), None, b"", 0, SECRET).await;
        assert_eq!((s, ct.as_str()), (400, "application/problem+json"), "{q}: {v}");
        assert!(v["detail"].as_str().unwrap_or("").contains(why), "{q}: {v}");
    }
    // The query string is signed: a signature for one page does not fetch another.
    let ts = withdraw_now().to_string();
    let sig = signature(SECRET, &ts, "GET", "/v1/withdrawals?limit=1", "", b"");
    let r = reqwest::Client::new()
        .get(format!("{}/v1/withdrawals?limit=1000", d.intake))
        .header("x-api-key", "dev")
        .header("x-timestamp", &ts)
        .header("x-signature", sig)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401, "{}", r.text().await.unwrap());
}
