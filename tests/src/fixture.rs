//! The credentials every test stack starts with: two tenants, `acme` (owns
//! entity `acme`) and `globex` (owns `globex`), with keys of each kind,
//! including a disabled one, one limited to a project and one without the
//! Alibaba permission.

use polymeter_auth::credentials::{
    hash_weave_key, AlibabaKey, KeyMeta, QianfanKey, WeaveKey, ALIBABA_METRICS_ACTION,
};
use polymeter_auth::Credentials;

pub const ACME_WEAVE_KEY: &str = "pm-acme00000000000000000000000000000000000";
pub const ACME_DISABLED_WEAVE_KEY: &str = "pm-acmedisabled0000000000000000000000000000";
/// Limited to `acme/bot`.
pub const ACME_BOT_ONLY_WEAVE_KEY: &str = "pm-acmebotonly00000000000000000000000000000";
pub const GLOBEX_WEAVE_KEY: &str = "pm-globex0000000000000000000000000000000000";

/// An Alibaba or Qianfan access key pair.
#[derive(Debug, Clone, Copy)]
pub struct AccessKey {
    pub id: &'static str,
    pub secret: &'static str,
}

pub const ACME_ALIBABA: AccessKey = AccessKey {
    id: "LTAIacmeMetrics000000000",
    secret: "acme-alibaba-secret",
};
pub const ACME_ALIBABA_NO_PERMISSION: AccessKey = AccessKey {
    id: "LTAIacmeNoPermission0000",
    secret: "acme-alibaba-other",
};
pub const ACME_ALIBABA_DISABLED: AccessKey = AccessKey {
    id: "LTAIacmeDisabled00000000",
    secret: "acme-alibaba-disabled",
};
/// Limited to `acme/bot`.
pub const ACME_ALIBABA_BOT_ONLY: AccessKey = AccessKey {
    id: "LTAIacmeBotOnly000000000",
    secret: "acme-alibaba-bot",
};
pub const GLOBEX_ALIBABA: AccessKey = AccessKey {
    id: "LTAIglobexMetrics0000000",
    secret: "globex-alibaba-secret",
};

pub const ACME_QIANFAN: AccessKey = AccessKey {
    id: "acmeqianfan000000000000000000000",
    secret: "acme-qianfan-secret",
};
pub const ACME_QIANFAN_DISABLED: AccessKey = AccessKey {
    id: "acmeqianfandisabled0000000000000",
    secret: "acme-qianfan-disabled",
};
pub const GLOBEX_QIANFAN: AccessKey = AccessKey {
    id: "globexqianfan0000000000000000000",
    secret: "globex-qianfan-secret",
};

fn meta(disabled: bool, projects: &[&str]) -> KeyMeta {
    KeyMeta {
        label: String::new(),
        disabled,
        created: String::new(),
        projects: projects.iter().map(|p| p.to_string()).collect(),
    }
}

fn weave(id: &str, key: &str, disabled: bool, projects: &[&str]) -> WeaveKey {
    WeaveKey {
        id: id.into(),
        sha256: hash_weave_key(key),
        meta: meta(disabled, projects),
    }
}

fn alibaba(key: AccessKey, actions: &[&str], disabled: bool, projects: &[&str]) -> AlibabaKey {
    AlibabaKey {
        access_key_id: key.id.into(),
        access_key_secret: key.secret.into(),
        actions: actions.iter().map(|a| a.to_string()).collect(),
        meta: meta(disabled, projects),
    }
}

fn qianfan(key: AccessKey, disabled: bool) -> QianfanKey {
    QianfanKey {
        access_key: key.id.into(),
        secret_key: key.secret.into(),
        meta: meta(disabled, &[]),
    }
}

pub fn credentials() -> Credentials {
    let mut c = Credentials::default();
    let acme = c.ensure_tenant("acme", &["acme".into()]);
    acme.weave_keys = vec![
        weave("wk-acme", ACME_WEAVE_KEY, false, &[]),
        weave("wk-acme-disabled", ACME_DISABLED_WEAVE_KEY, true, &[]),
        weave("wk-acme-bot", ACME_BOT_ONLY_WEAVE_KEY, false, &["acme/bot"]),
    ];
    acme.alibaba_keys = vec![
        alibaba(ACME_ALIBABA, &[ALIBABA_METRICS_ACTION], false, &[]),
        alibaba(
            ACME_ALIBABA_NO_PERMISSION,
            &["aicontent:ModelRouterQueryObservationCharts"],
            false,
            &[],
        ),
        alibaba(ACME_ALIBABA_DISABLED, &["aicontent:*"], true, &[]),
        alibaba(ACME_ALIBABA_BOT_ONLY, &["*"], false, &["acme/bot"]),
    ];
    acme.qianfan_keys = vec![
        qianfan(ACME_QIANFAN, false),
        qianfan(ACME_QIANFAN_DISABLED, true),
    ];
    let globex = c.ensure_tenant("globex", &["globex".into()]);
    globex.weave_keys = vec![weave("wk-globex", GLOBEX_WEAVE_KEY, false, &[])];
    globex.alibaba_keys = vec![alibaba(
        GLOBEX_ALIBABA,
        &[ALIBABA_METRICS_ACTION],
        false,
        &[],
    )];
    globex.qianfan_keys = vec![qianfan(GLOBEX_QIANFAN, false)];
    c.check().expect("the fixture credentials are valid");
    c
}
