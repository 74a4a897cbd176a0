//! The HTTP contract: validation, errors, auth, OpenAPI, pagination.

use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::TestApp;

async fn instant_app(env: &[(&str, String)]) -> TestApp {
    TestApp::builder().env(env).noop_stages(&[]).spawn().await
}

#[tokio::test]
async fn invalid_input_is_a_400_that_says_what_is_wrong() {
    let app = instant_app(&[]).await;
    let post = |body: Value| app.client.post(app.url("/jobs")).json(&body).send();
    let response = post(json!({"channel_id": "not-a-channel"})).await.unwrap();
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "invalid_channel_id");
    assert!(body["error"]["message"].as_str().unwrap().contains("not-a-channel"));

    for bad in [json!({}), json!({"channel_id": 5}), json!({"channel_id": "UCabcdefghijklmnopqrstuv", "extra": 1})] {
        let response = post(bad.clone()).await.unwrap();
        assert_eq!(response.status(), 400, "{bad}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], "invalid_body", "{bad}");
    }
    let response = app
        .client
        .post(app.url("/jobs"))
        .body("{not json")
        .header("content-type", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let (_, jobs) = app.get_json("/jobs").await;
    assert_eq!(jobs["total"], 0, "nothing was created");
    app.shutdown().await;
}

#[tokio::test]
async fn unknown_ids_are_404() {
    let app = instant_app(&[]).await;
    for path in [
        "/jobs/0190f3b2-1111-7000-8000-000000000000",
        "/jobs/not-a-uuid",
        "/videos/aaaaaaaaaaa/transcript",
        "/videos/aaaaaaaaaaa/summary",
        "/videos/bad/summary",
        "/no/such/route",
    ] {
        let (status, body) = app.get_json(path).await;
        assert_eq!(status, 404, "{path}");
        assert_eq!(body["error"]["code"], "not_found", "{path}");
    }
    let response = app.client.delete(app.url("/jobs/0190f3b2-1111-7000-8000-000000000000")).send().await.unwrap();
    assert_eq!(response.status(), 404);
    app.shutdown().await;
}

#[tokio::test]
async fn a_job_is_accepted_with_a_location_and_listed() {
    let app = instant_app(&[]).await;
    let response = app
        .client
        .post(app.url("/jobs"))
        .json(&json!({"channel_id": "UCabcdefghijklmnopqrstuv"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let body: Value = response.json().await.unwrap();
    let job_id = body["job_id"].as_str().unwrap();
    assert_eq!(location, format!("/jobs/{job_id}"));
    let job = app.wait_for_job(job_id, Duration::from_secs(20)).await;
    // A channel with no videos completes with nothing to do.
    assert_eq!(job["status"], "completed");
    assert_eq!(job["counts"]["total"], 0);
    for key in ["job_id", "channel_id", "status", "error", "created_at", "updated_at", "counts", "videos"] {
        assert!(job.get(key).is_some(), "{key} missing");
    }
    let second = app.submit("UCabcdefghijklmnopqrstuv", false).await;
    let (_, page) = app.get_json("/jobs?limit=1").await;
    assert_eq!(page["total"], 2);
    assert_eq!(page["jobs"].as_array().unwrap().len(), 1);
    assert_eq!(page["jobs"][0]["job_id"], second.as_str(), "newest first");
    let (_, page) = app.get_json("/jobs?limit=1&offset=1").await;
    assert_eq!(page["jobs"][0]["job_id"], job_id);
    app.shutdown().await;
}

/// A job's videos come a page at a time, filtered by status, while its counts cover the whole job.
#[tokio::test]
async fn a_jobs_videos_are_paged_and_its_counts_stay_whole() {
    let ids = ["aaaaaaaaaaa", "bbbbbbbbbbb", "ccccccccccc", "ddddddddddd", "eeeeeeeeeee"];
    let app = TestApp::builder().noop_stages(&ids).spawn().await;
    let job_id = app.submit("UCabcdefghijklmnopqrstuv", false).await;
    app.wait_for_job(&job_id, Duration::from_secs(30)).await;
    let (status, page) = app.get_json(&format!("/jobs/{job_id}?limit=2&offset=1")).await;
    assert_eq!(status, 200);
    let listed: Vec<&str> =
        page["videos"].as_array().unwrap().iter().map(|v| v["video_id"].as_str().unwrap()).collect();
    assert_eq!(listed, ["bbbbbbbbbbb", "ccccccccccc"], "discovery order, from the offset");
    assert_eq!(
        (page["limit"].as_u64(), page["offset"].as_u64(), page["matching"].as_u64()),
        (Some(2), Some(1), Some(5))
    );
    assert_eq!((page["counts"]["total"].as_u64(), page["counts"]["summarized"].as_u64()), (Some(5), Some(5)));
    assert_eq!(page["counts"]["failed"], 0, "every status is counted");
    let (_, none) = app.get_json(&format!("/jobs/{job_id}?status=failed")).await;
    assert_eq!((none["videos"].as_array().unwrap().len(), none["matching"].as_u64()), (0, Some(0)));
    assert_eq!(none["counts"]["total"], 5, "the filter pages the videos, not the counts");
    let (_, all) = app.get_json(&format!("/jobs/{job_id}?status=summarized")).await;
    assert_eq!((all["videos"].as_array().unwrap().len(), all["limit"].as_u64()), (5, Some(1000)), "the default page");
    for bad in ["limit=1001", "limit=0", "offset=-1", "status=nonsense", "limit=x"] {
        let (status, body) = app.get_json(&format!("/jobs/{job_id}?{bad}")).await;
        assert_eq!((status, body["error"]["code"].as_str()), (400, Some("invalid_query")), "{bad}: {body}");
    }
    let (_, attempts) = app.get_json(&format!("/jobs/{job_id}/attempts?limit=3&offset=20")).await;
    assert_eq!(attempts["total"], 1 + 4 * ids.len() as u64);
    assert_eq!(attempts["attempts"].as_array().unwrap().len(), 1, "the last of 21");
    app.shutdown().await;
}

/// `GET /jobs/{job_id}{query}` with `If-None-Match: tag`: status, ETag and body.
async fn get_job_page(app: &TestApp, job_id: &str, query: &str, tag: Option<&str>) -> (u16, Option<String>, String) {
    let mut request = app.client.get(app.url(&format!("/jobs/{job_id}{query}")));
    if let Some(tag) = tag {
        request = request.header("If-None-Match", tag);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let tag = response.headers().get("etag").map(|t| t.to_str().unwrap().to_owned());
    (status, tag, response.text().await.unwrap())
}

/// `GET /jobs/{id}` carries an ETag; sent back in `If-None-Match` it gets a bodiless 304 until the
/// job, one of its videos, or the page asked for changes.
#[tokio::test]
async fn a_polled_job_is_not_modified_until_it_changes() {
    use tubesum::ports::JobStore;
    let ids = ["etagvideo01", "etagvideo02"];
    // Discovery only: the job runs, its videos wait for a download worker.
    let app = TestApp::builder().noop_stages(&ids).pools(vec![tubesum::domain::Stage::Discovery]).spawn().await;
    let job_id = app.submit("UCabcdefghijklmnopqrstuv", false).await;
    let waiting = crate::helpers::poll_until(Duration::from_secs(30), || async {
        let (_, job) = app.get_json(&format!("/jobs/{job_id}")).await;
        job["counts"]["downloading"] == 2
    })
    .await;
    assert!(waiting, "the videos wait for a download");
    let (status, tag, body) = get_job_page(&app, &job_id, "", None).await;
    let tag = tag.expect("an ETag");
    assert_eq!(status, 200, "{body}");
    let whole = body;
    let (status, again, body) = get_job_page(&app, &job_id, "", Some(&tag)).await;
    assert_eq!((status, again.as_deref(), body.as_str()), (304, Some(tag.as_str()), ""), "unchanged: 304, no body");
    assert_eq!(get_job_page(&app, &job_id, "", Some(&format!("\"other\", {tag}"))).await.0, 304, "one of a list");
    assert_eq!(get_job_page(&app, &job_id, "", Some("*")).await.0, 304);
    assert_eq!(get_job_page(&app, &job_id, "", Some("\"other\"")).await.0, 200, "another version");
    let (status, paged, _) = get_job_page(&app, &job_id, "?limit=1", Some(&tag)).await;
    assert_eq!(status, 200, "another page is another answer");
    assert_ne!(paged.as_deref(), Some(tag.as_str()));

    // While its tag stands, the whole page is the one rendered before, not read again: a write
    // that bypasses the change counter (nothing but this test does) stays unseen.
    let database = app.data.path().join("tubesum.sqlite");
    let sqlite = sqlx::SqlitePool::connect(&format!("sqlite://{}", database.display())).await.unwrap();
    sqlx::query("UPDATE job_videos SET title = 'renamed behind the counter' WHERE video_id = ?")
        .bind(ids[0])
        .execute(&sqlite)
        .await
        .unwrap();
    sqlite.close().await;
    let (status, same_tag, same_body) = get_job_page(&app, &job_id, "", None).await;
    assert_eq!(
        (status, same_tag.as_deref(), &same_body),
        (200, Some(tag.as_str()), &whole),
        "rendered once per change"
    );

    // One video changes (its status even stays the same): the old tag no longer matches.
    let store = tubesum::adapters::embedded::SqliteStore::open(&database).await.unwrap();
    let video = tubesum::domain::VideoId::parse(ids[1]).unwrap();
    let same =
        tubesum::domain::VideoUpdate { status: tubesum::domain::VideoStatus::Downloading, attempts: 1, error: None };
    store.update_video(job_id.parse().unwrap(), &video, &same).await.unwrap();
    let (status, newer, fresh) = get_job_page(&app, &job_id, "", Some(&tag)).await;
    assert_eq!(status, 200, "a video changed");
    assert!(fresh.contains("renamed behind the counter"), "a change renders the page again: {fresh}");
    assert_ne!(newer.as_deref(), Some(tag.as_str()));
    assert_eq!(get_job_page(&app, &job_id, "", newer.as_deref()).await.0, 304);
    app.shutdown().await;
}

/// A job that ended with every video final changes no more: its pages are answered from memory
/// (a change made behind the API's back stays unseen on a page already read, and shows on one
/// that was not), with their ETag.
#[tokio::test]
async fn a_finished_jobs_pages_are_answered_from_memory() {
    use tubesum::ports::JobStore;
    let ids = ["donevideo01", "donevideo02"];
    let app = TestApp::builder().noop_stages(&ids).spawn().await;
    let job_id = app.submit("UCabcdefghijklmnopqrstuv", false).await;
    app.wait_for_job(&job_id, Duration::from_secs(30)).await;
    let (status, tag, body) = get_job_page(&app, &job_id, "", None).await;
    assert_eq!(status, 200, "{body}");

    let store = tubesum::adapters::embedded::SqliteStore::open(&app.data.path().join("tubesum.sqlite")).await.unwrap();
    let video = tubesum::domain::VideoId::parse(ids[1]).unwrap();
    let behind = tubesum::domain::VideoUpdate {
        status: tubesum::domain::VideoStatus::Failed,
        attempts: 1,
        error: Some("changed behind the API's back".into()),
    };
    store.update_video(job_id.parse().unwrap(), &video, &behind).await.unwrap();
    let (status, again, cached) = get_job_page(&app, &job_id, "", None).await;
    assert_eq!((status, &again, &cached), (200, &tag, &body), "the page read before, from memory");
    assert_eq!(get_job_page(&app, &job_id, "", tag.as_deref()).await.0, 304);
    let (_, _, fresh) = get_job_page(&app, &job_id, "?offset=1", None).await;
    assert!(fresh.contains("changed behind the API"), "a page not read before comes from the store: {fresh}");
    app.shutdown().await;
}

#[tokio::test]
async fn the_api_token_guards_every_route_but_healthz() {
    let app = instant_app(&[("TUBESUM_SERVER__API_TOKEN", "s3cret".into())]).await;
    let (status, _) = app.get_json("/healthz").await;
    assert_eq!(status, 200);
    for path in ["/jobs", "/openapi.json", "/console/tree"] {
        let (status, body) = app.get_json(path).await;
        assert_eq!(status, 401, "{path}");
        assert_eq!(body["error"]["code"], "unauthorized");
        let wrong = app.client.get(app.url(path)).bearer_auth("nope").send().await.unwrap();
        assert_eq!(wrong.status(), 401);
        let right = app.client.get(app.url(path)).bearer_auth("s3cret").send().await.unwrap();
        assert_eq!(right.status(), 200, "{path}");
        let lower = app.client.get(app.url(path)).header("authorization", "bearer s3cret").send().await.unwrap();
        assert_eq!(lower.status(), 200, "the scheme is case-insensitive: {path}");
    }
    // The console's pages send a browser without a session to the sign-in form; they never
    // take the token from a URL.
    let page = app.client.get(app.url("/ui/ops?token=s3cret")).send().await.unwrap();
    assert_eq!((page.status().as_u16(), page.url().path()), (200, "/ui/sign-in"));
    let page = page.text().await.unwrap();
    assert!(page.contains(r#"type="password""#) && !page.contains("Operations"), "a sign-in form: {page}");
    let post = app
        .client
        .post(app.url("/jobs"))
        .json(&json!({"channel_id": "UCabcdefghijklmnopqrstuv"}))
        .send()
        .await
        .unwrap();
    assert_eq!(post.status(), 401);
    app.shutdown().await;
}

#[tokio::test]
async fn a_browser_signs_in_once_and_its_cookie_stands_in_for_the_token_on_this_sites_requests_only() {
    let app = instant_app(&[("TUBESUM_SERVER__API_TOKEN", "s3cret".into())]).await;
    let sign_in = |token: &str| app.client.post(app.url("/session")).json(&json!({"token": token})).send();
    let wrong = sign_in("nope").await.unwrap();
    assert_eq!(wrong.status(), 401);
    assert_eq!(sign_in("").await.unwrap().status(), 400);
    assert!(wrong.headers().get("set-cookie").is_none());
    let signed = sign_in("s3cret").await.unwrap();
    assert_eq!(signed.status(), 204);
    let set = signed.headers()["set-cookie"].to_str().unwrap().to_owned();
    for part in ["tubesum_session=", "HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(set.contains(part), "{set}");
    }
    assert!(!set.contains("s3cret"), "the cookie is not the token: {set}");
    let cookie = set.split(';').next().unwrap().to_owned();

    let get = |path: &str| app.client.get(app.url(path)).header("cookie", &cookie).send();
    assert_eq!(get("/jobs").await.unwrap().status(), 200);
    let events = get("/events").await.unwrap();
    assert_eq!(events.status(), 200, "an EventSource (no headers of its own) gets in with the cookie");
    drop(events);
    let forged = app.client.get(app.url("/jobs")).header("cookie", "tubesum_session=00ff").send().await.unwrap();
    assert_eq!(forged.status(), 401);

    let submit = |origin: Option<&str>| {
        let mut request = app
            .client
            .post(app.url("/jobs"))
            .header("cookie", &cookie)
            .json(&json!({"channel_id": "UCabcdefghijklmnopqrstuv"}));
        if let Some(origin) = origin {
            request = request.header("origin", origin);
        }
        request.send()
    };
    for origin in [Some("http://evil.example"), None] {
        let refused = submit(origin).await.unwrap();
        assert_eq!(refused.status(), 403, "{origin:?}");
        let body: Value = refused.json().await.unwrap();
        assert_eq!(body["error"]["code"], "cross_site", "{origin:?}");
    }
    assert_eq!(submit(Some(&app.address)).await.unwrap().status(), 202, "this server's own page");
    let (_, jobs) = app.get_json("/jobs?limit=1").await;
    assert_eq!(jobs["error"]["code"], "unauthorized", "and nothing without token or cookie");

    let out = app.client.delete(app.url("/session")).send().await.unwrap();
    assert_eq!(out.status(), 204);
    assert!(out.headers()["set-cookie"].to_str().unwrap().contains("Max-Age=0"));
    app.shutdown().await;
}

#[tokio::test]
async fn openapi_describes_the_routes() {
    let app = instant_app(&[("TUBESUM_SERVER__API_TOKEN", "s3cret".into())]).await;
    let response = app.client.get(app.url("/openapi.json")).bearer_auth("s3cret").send().await.unwrap();
    assert_eq!(response.status(), 200);
    let doc: Value = response.json().await.unwrap();
    for path in [
        "/jobs",
        "/jobs/{job_id}",
        "/videos/{video_id}/transcript",
        "/videos/{video_id}/summary",
        "/summarize-text",
        "/subscriptions",
        "/subscriptions/{subscription_id}",
        "/websub/{subscription_id}",
        "/healthz",
    ] {
        assert!(doc["paths"].get(path).is_some(), "{path} missing");
    }
    assert_eq!(doc["components"]["securitySchemes"]["bearer"]["scheme"], "bearer");
    assert_eq!(doc["security"], json!([{"bearer": []}]), "the token is required by default");
    assert_eq!(doc["paths"]["/healthz"]["get"]["security"], json!([{}]), "but not for /healthz");
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            for (status, response) in operation["responses"].as_object().unwrap() {
                let described = response["description"].as_str().is_some_and(|d| !d.is_empty());
                assert!(described, "{method} {path} {status} has no description");
            }
            let unauthorized = operation["responses"].get("401").is_some();
            // Open: /healthz, signing in and out (a wrong token at sign-in is its own 401), and the
            // WebSub callback (hubs cannot send the token; their notifications are signed).
            let open = ["/healthz", "/websub/{subscription_id}"].contains(&path.as_str());
            let guarded = !(open || (path == "/session" && method == "delete"));
            let no_token = open || path == "/session";
            assert_eq!(operation.get("security") == Some(&json!([{}])), no_token, "{method} {path}: security");
            assert_eq!(unauthorized, guarded, "{method} {path}: 401 documented where the token guards");
            let takes_query = operation["parameters"].as_array().is_some_and(|p| p.iter().any(|p| p["in"] == "query"));
            if takes_query || operation.get("requestBody").is_some() {
                assert!(operation["responses"].get("400").is_some(), "{method} {path}: 400 undocumented");
            }
            if operation.get("requestBody").is_some() {
                for status in ["413", "415"] {
                    assert!(operation["responses"].get(status).is_some(), "{method} {path}: {status} undocumented");
                }
            }
        }
    }
    // Every `$ref` names a schema the document has (a dangling one makes it invalid OpenAPI).
    fn refs<'v>(value: &'v Value, out: &mut Vec<&'v str>) {
        match value {
            Value::Object(map) => {
                if let Some(Value::String(target)) = map.get("$ref") {
                    out.push(target);
                }
                map.values().for_each(|v| refs(v, out));
            }
            Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
            _ => {}
        }
    }
    let mut found = Vec::new();
    refs(&doc, &mut found);
    for target in found {
        let name = target.strip_prefix("#/components/schemas/").unwrap_or_else(|| panic!("{target}"));
        assert!(doc["components"]["schemas"].get(name).is_some(), "{target} is not in the document");
    }
    let links = &doc["paths"]["/jobs"]["post"]["responses"]["202"]["links"];
    assert_eq!(links["GetJob"]["operationId"], "get_job", "{links}");
    assert_eq!(links["GetJob"]["parameters"]["job_id"], "$response.body#/job_id");
    let channel_id = &doc["components"]["schemas"]["CreateJob"]["properties"]["channel_id"];
    assert!(channel_id["pattern"].as_str().is_some_and(|p| p.contains("@")), "{channel_id}");
    assert_eq!(doc["components"]["schemas"]["SummarizeText"]["properties"]["text"]["minLength"], 1);
    app.shutdown().await;

    // A server without a token asks for none, and its document says so.
    let open = instant_app(&[]).await;
    let (status, doc) = open.get_json("/openapi.json").await;
    assert_eq!(status, 200);
    assert!(doc.get("security").is_none() || doc["security"].is_null(), "{}", doc["security"]);
    assert!(!doc.to_string().contains("\"401\""), "no 401 documented on an open server");
    open.shutdown().await;
}

#[tokio::test]
async fn request_bodies_are_capped() {
    let app = instant_app(&[("TUBESUM_SERVER__MAX_BODY_BYTES", "1024".into())]).await;
    let big = json!({"text": "word ".repeat(1000)});
    let response = app.client.post(app.url("/summarize-text")).json(&big).send().await.unwrap();
    assert_eq!(response.status(), 413);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "body_too_large", "the JSON error body: {body}");
    app.shutdown().await;
}

/// Errors made below the handlers (wrong method, wrong content type) carry the JSON error body too.
#[tokio::test]
async fn every_error_has_the_json_body() {
    let app = instant_app(&[]).await;
    let response = app.client.put(app.url("/jobs")).send().await.unwrap();
    assert_eq!(response.status(), 405);
    assert!(response.headers().get("allow").is_some(), "Allow kept");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "method_not_allowed");
    let response = app
        .client
        .post(app.url("/jobs"))
        .header("content-type", "text/plain")
        .body(r#"{"channel_id": "UCabcdefghijklmnopqrstuv"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 415);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unsupported_media_type");
    let long = "x".repeat(100_000);
    let response = app.client.post(app.url("/jobs")).json(&json!({ "channel_id": long })).send().await.unwrap();
    let body: Value = response.json().await.unwrap();
    assert!(body["error"]["message"].as_str().unwrap().chars().count() <= 301, "echoed input is cut short");
    app.shutdown().await;
}

#[tokio::test]
async fn summarize_text_works_offline_and_rejects_empty_text() {
    let app = instant_app(&[]).await;
    let text = "Bees make honey from nectar. They collect nectar from flowers in the meadow. \
                In the hive, bees fan their wings to dry the nectar. The honey is then sealed with wax. \
                Beekeepers harvest the extra honey in late summer. A strong hive can hold sixty thousand bees. \
                The queen lays up to two thousand eggs a day. Drones do not collect any nectar at all. \
                In winter the bees cluster together to stay warm.";
    let response = app.client.post(app.url("/summarize-text")).json(&json!({"text": text})).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    let summary = body["summary"].as_str().unwrap();
    assert!(!summary.is_empty() && summary.len() < text.len(), "{summary}");
    assert!(text.contains(summary.split(". ").next().unwrap().trim_end_matches('.')), "extractive: {summary}");
    let empty = app.client.post(app.url("/summarize-text")).json(&json!({"text": "  "})).send().await.unwrap();
    assert_eq!(empty.status(), 400);
    app.shutdown().await;
}

/// The default cap (1 MiB): a 2 MiB body is a 413 with the JSON error body, on every route that
/// takes one.
#[tokio::test]
async fn a_two_mebibyte_body_is_refused_at_the_default_cap() {
    let app = instant_app(&[]).await;
    let big = json!({"text": "x".repeat(2 * 1024 * 1024)});
    for path in ["/summarize-text", "/jobs"] {
        let response = app.client.post(app.url(path)).json(&big).send().await.unwrap();
        assert_eq!(response.status(), 413, "{path}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], "body_too_large", "{path}: {body}");
    }
    app.shutdown().await;
}

#[tokio::test]
async fn summarize_text_refuses_more_text_than_its_cap() {
    let app = instant_app(&[("TUBESUM_SERVER__SUMMARIZE_TEXT_MAX_CHARS", "50".into())]).await;
    let long = json!({"text": "é".repeat(51)});
    let response = app.client.post(app.url("/summarize-text")).json(&long).send().await.unwrap();
    assert_eq!(response.status(), 413);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "text_too_long");
    assert!(body["error"]["message"].as_str().unwrap().contains("51 characters"), "{body}");
    let fits = json!({"text": "é".repeat(50)});
    assert_eq!(app.client.post(app.url("/summarize-text")).json(&fits).send().await.unwrap().status(), 200);
    app.shutdown().await;
}

#[tokio::test]
async fn the_cluster_view_lists_this_node_with_its_address_and_pools() {
    let app = TestApp::builder().env(&[("TUBESUM_CLUSTER__NODE_NAME", "solo".into())]).noop_stages(&[]).spawn().await;
    let (status, view) = app.get_json("/cluster").await;
    assert_eq!(status, 200, "{view:#}");
    let nodes = view["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 1, "{view:#}");
    let node = &nodes[0];
    // The configured name (in a process running several pipelines, as tests do, with its instance).
    let name = node["name"].as_str().unwrap();
    assert!(name == "solo" || name.starts_with("solo/p"), "{node}");
    assert_eq!(node["node"], view["node"]);
    assert!(node["node"].as_str().unwrap().starts_with(&format!("{name}#")), "{node}");
    assert_eq!(node["http_addr"], app.url(""));
    assert_eq!((node["alive"].as_bool(), node["this_node"].as_bool()), (Some(true), Some(true)));
    assert_eq!(node["stages"].as_array().unwrap().len(), 5, "{node}");
    assert!(view["orphaned"].as_array().unwrap().is_empty());
    // A stopped node leaves: its row is removed at shutdown.
    let data = app.stop_keeping_data().await;
    let store = tubesum::adapters::embedded::SqliteStore::open(&data.path().join("tubesum.sqlite")).await.unwrap();
    let (left, _) = tubesum::ports::JobStore::list_nodes(&store).await.unwrap();
    assert!(left.is_empty(), "{left:?}");
}
