//! Debian's chromium, headless, driven over the DevTools protocol
//! (`chromiumoxide`), for the console's tests: pages whose console errors,
//! uncaught exceptions and browser-logged errors (a refused script, a
//! Content-Security-Policy violation) are collected, waits on the page's own
//! `data-ready` flag, values read with JavaScript, and screenshots.

use chromiumoxide::browser::{Browser, BrowserConfig};
use chromiumoxide::cdp::browser_protocol::emulation::SetDeviceMetricsOverrideParams;
use chromiumoxide::cdp::browser_protocol::log::{EventEntryAdded, LogEntryLevel, LogEntrySource};
use chromiumoxide::cdp::js_protocol::runtime::{
    ConsoleApiCalledType, EventConsoleApiCalled, EventExceptionThrown,
};
use chromiumoxide::page::ScreenshotParams;
use chromiumoxide::Page;
use futures::StreamExt;
use serde::de::DeserializeOwned;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Where chromium is: `POLYMETER_CHROMIUM`, else Debian's `/usr/bin/chromium`.
pub fn chromium_path() -> PathBuf {
    std::env::var_os("POLYMETER_CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"))
}

/// A running headless chromium.
pub struct Chromium {
    browser: Browser,
    events: tokio::task::JoinHandle<()>,
    _profile: tempfile::TempDir,
}

/// A page and what went wrong in it so far.
pub struct Tab {
    pub page: Page,
    problems: Arc<Mutex<Vec<String>>>,
}

impl Chromium {
    pub async fn launch() -> Self {
        let path = chromium_path();
        assert!(
            path.exists(),
            "chromium not found at {} (install Debian's chromium, or set POLYMETER_CHROMIUM)",
            path.display()
        );
        let profile = tempfile::tempdir().unwrap();
        let config = BrowserConfig::builder()
            .chrome_executable(&path)
            .user_data_dir(profile.path())
            .no_sandbox()
            // This machine's network is closed: without these chromium keeps
            // trying to reach Google's services.
            .args([
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-dev-shm-usage",
            ])
            .window_size(1280, 1000)
            .viewport(None)
            .launch_timeout(Duration::from_secs(60))
            .request_timeout(Duration::from_secs(60))
            .build()
            .expect("a chromium configuration");
        let (browser, mut handler) = Browser::launch(config)
            .await
            .unwrap_or_else(|e| panic!("chromium at {} did not start: {e}", path.display()));
        let events = tokio::spawn(async move { while handler.next().await.is_some() {} });
        Chromium {
            browser,
            events,
            _profile: profile,
        }
    }

    /// A new tab, collecting every error the page or the browser reports.
    pub async fn tab(&self) -> Tab {
        let page = self.browser.new_page("about:blank").await.unwrap();
        let problems = Arc::new(Mutex::new(Vec::new()));
        let mut console = page
            .event_listener::<EventConsoleApiCalled>()
            .await
            .unwrap();
        let mut thrown = page.event_listener::<EventExceptionThrown>().await.unwrap();
        let mut logged = page.event_listener::<EventEntryAdded>().await.unwrap();
        page.enable_runtime().await.unwrap();
        page.enable_log().await.unwrap();
        let sink = problems.clone();
        tokio::spawn(async move {
            loop {
                let problem = tokio::select! {
                    Some(e) = console.next() => match e.r#type {
                        ConsoleApiCalledType::Error | ConsoleApiCalledType::Assert => Some(format!(
                            "console.{:?}: {}",
                            e.r#type,
                            e.args.iter().filter_map(|a| a.value.as_ref().map(|v| v.to_string())).collect::<Vec<_>>().join(" ")
                        )),
                        _ => None,
                    },
                    Some(e) = thrown.next() => Some(format!(
                        "uncaught: {}",
                        e.exception_details.exception.as_ref().and_then(|x| x.description.clone()).unwrap_or_else(|| e.exception_details.text.clone())
                    )),
                    Some(e) = logged.next() => (e.entry.level == LogEntryLevel::Error).then(|| format!(
                        "{:?}: {}",
                        e.entry.source, e.entry.text
                    )).filter(|_| e.entry.source != LogEntrySource::Network),
                    else => break,
                };
                if let Some(p) = problem {
                    sink.lock().unwrap().push(p);
                }
            }
        });
        Tab { page, problems }
    }

    /// Asks chromium to exit, and kills it if it has not within ten seconds:
    /// a test never waits on a browser that stopped answering.
    pub async fn close(mut self) {
        let asked = tokio::time::timeout(Duration::from_secs(10), async {
            let _ = self.browser.close().await;
            let _ = self.browser.wait().await;
        })
        .await;
        if asked.is_err() {
            let _ = self.browser.kill().await;
        }
        self.events.abort();
    }
}

impl Tab {
    pub async fn goto(&self, url: &str) {
        self.page.goto(url).await.unwrap();
    }

    /// The value of a JavaScript expression (a promise is awaited).
    pub async fn eval<T: DeserializeOwned>(&self, expression: &str) -> T {
        self.page
            .evaluate(expression)
            .await
            .unwrap_or_else(|e| panic!("{expression}: {e}"))
            .into_value()
            .unwrap_or_else(|e| panic!("{expression}: {e}"))
    }

    /// Waits until `document.body.dataset.ready` is one of `states`; returns it.
    pub async fn wait_ready(&self, states: &[&str], within: Duration) -> String {
        let deadline = Instant::now() + within;
        loop {
            let now: String = self
                .eval("document.body ? (document.body.dataset.ready || '') : ''")
                .await;
            if states.contains(&now.as_str()) {
                return now;
            }
            assert!(
                Instant::now() < deadline,
                "the page did not become {states:?} within {within:?} (it is {now:?}; status: {:?}; problems: {:?})",
                self.eval::<String>("(document.getElementById('status') || {}).textContent || ''").await,
                self.problems()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Types `text` into the element `selector` (after clearing it).
    pub async fn type_into(&self, selector: &str, text: &str) {
        let element = self.page.find_element(selector).await.unwrap();
        element.click().await.unwrap();
        let _: bool = self
            .eval(&format!(
                "(document.querySelector({selector:?}).value = '', true)"
            ))
            .await;
        element.type_str(text).await.unwrap();
    }

    /// Presses `key` (a DOM key name, e.g. "Enter") in the element `selector`.
    pub async fn press(&self, selector: &str, key: &str) {
        let element = self.page.find_element(selector).await.unwrap();
        element.focus().await.unwrap();
        element.press_key(key).await.unwrap();
    }

    pub async fn click(&self, selector: &str) {
        self.page
            .find_element(selector)
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
    }

    /// Emulates a screen `width` pixels wide (a phone when narrow).
    pub async fn screen(&self, width: u32, height: u32, mobile: bool) {
        self.page
            .execute(SetDeviceMetricsOverrideParams::new(
                width as i64,
                height as i64,
                1.0,
                mobile,
            ))
            .await
            .unwrap();
    }

    /// Saves a PNG of the element `selector` (the whole page when `None`).
    pub async fn screenshot(&self, selector: Option<&str>, path: &Path) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        match selector {
            Some(s) => {
                // The element's box in page coordinates, captured even where
                // it lies below the fold.
                let [x, y, width, height]: [f64; 4] = self
                    .eval(&format!(
                        "(() => {{ const r = document.querySelector({s:?}).getBoundingClientRect();
                           return [r.left + scrollX, r.top + scrollY, r.width, r.height]; }})()"
                    ))
                    .await;
                let clip = chromiumoxide::cdp::browser_protocol::page::Viewport {
                    x,
                    y,
                    width,
                    height,
                    scale: 1.0,
                };
                self.page
                    .save_screenshot(
                        ScreenshotParams::builder()
                            .clip(clip)
                            .capture_beyond_viewport(true)
                            .build(),
                        path,
                    )
                    .await
                    .unwrap();
            }
            None => {
                self.page
                    .save_screenshot(ScreenshotParams::builder().full_page(true).build(), path)
                    .await
                    .unwrap();
            }
        }
    }

    /// What went wrong in the page so far.
    pub fn problems(&self) -> Vec<String> {
        self.problems.lock().unwrap().clone()
    }
}
