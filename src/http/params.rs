//! The original API's fields: from a JSON body (sent even on GET) or the
//! query string, which wins; read into the typed requests of `api::original`.

use std::collections::HashMap;

use actix_web::HttpRequest;
use serde_json::Value;

use super::error::ApiError;
use crate::api::{
    ImageBuildJson, LegacyBuildRequest, LegacyComponentRequest, LegacyImageRequest,
    LegacyPutRequest,
};

/// Fields from the JSON body, overridden by the query string.
pub struct Params(HashMap<String, String>);

impl Params {
    pub fn parse(req: &HttpRequest, body: &[u8]) -> Result<Self, ApiError> {
        let mut map = HashMap::new();
        let trimmed = body.iter().position(|b| !b.is_ascii_whitespace());
        if trimmed.is_some() {
            let v: Value = serde_json::from_slice(body)
                .map_err(|e| ApiError::bad_request(super::wording::json_syntax(&e)))?;
            let Value::Object(obj) = v else {
                return Err(ApiError::bad_request("the JSON body must be an object"));
            };
            for (k, v) in obj {
                let s = match v {
                    Value::String(s) => s,
                    Value::Null => continue,
                    Value::Bool(b) => b.to_string(),
                    Value::Number(n) => n.to_string(),
                    other => other.to_string(),
                };
                map.insert(k, s);
            }
        }
        let q: Vec<(String, String)> = serde_urlencoded::from_str(req.query_string())
            .map_err(|_| ApiError::bad_request("the query string is not name=value pairs"))?;
        map.extend(q);
        Ok(Self(map))
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    fn opt(&self, name: &str) -> Option<String> {
        self.get(name).map(str::to_owned)
    }

    pub fn require(&self, name: &str) -> Result<&str, ApiError> {
        self.get(name).filter(|v| !v.is_empty()).ok_or_else(|| {
            ApiError::bad_request(format!("'{name}' is required (JSON body or query string)"))
        })
    }

    pub fn component_request(&self) -> Result<LegacyComponentRequest, ApiError> {
        Ok(LegacyComponentRequest {
            component: self.require("component")?.to_owned(),
            tag: self.require("tag")?.to_owned(),
            architecture: self.opt("architecture"),
            arch: self.opt("arch"),
            format: self.opt("format"),
            view: self.opt("view"),
        })
    }

    pub fn put_request(&self) -> Result<LegacyPutRequest, ApiError> {
        Ok(LegacyPutRequest {
            component: self.require("component")?.to_owned(),
            tag: self.require("tag")?.to_owned(),
            results_tarball: self.require("results_tarball")?.to_owned(),
            architecture: self.opt("architecture"),
            arch: self.opt("arch"),
            wrap: self.opt("wrap"),
        })
    }

    pub fn build_request(&self) -> Result<LegacyBuildRequest, ApiError> {
        Ok(LegacyBuildRequest {
            component: self.require("component")?.to_owned(),
            tag: self.require("tag")?.to_owned(),
            url: self.opt("url"),
            architecture: self.opt("architecture"),
            arch: self.opt("arch"),
            wait: self.opt("wait"),
        })
    }

    pub fn image_request(&self) -> Result<LegacyImageRequest, ApiError> {
        Ok(LegacyImageRequest {
            component: self.require("component")?.to_owned(),
            branch: self.opt("branch").filter(|b| !b.is_empty()),
            architecture: self.opt("architecture"),
            arch: self.opt("arch"),
        })
    }

    pub fn image_build(&self) -> Result<ImageBuildJson, ApiError> {
        Ok(ImageBuildJson {
            dockerfile: self.require("dockerfile")?.to_owned(),
            component: self.opt("component"),
            branch: self.opt("branch"),
            architecture: self.opt("architecture"),
            arch: self.opt("arch"),
            no_cache: self.opt("no_cache"),
        })
    }
}

/// `wait`: answer when the job ends instead of 202.
#[derive(serde::Deserialize, Default, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct WaitQuery {
    /// Wait for the build to end (up to 4 times `build.timeout_secs`) instead of answering 202.
    #[serde(default)]
    pub wait: bool,
}

/// The query of an image build (`POST /v1/images`, `POST /image`).
#[derive(serde::Deserialize, Default, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct BuildQuery {
    /// Wait for the build to end (up to twice `build.timeout_secs`) instead of answering 202.
    #[serde(default)]
    pub wait: bool,
    /// Rebuild even when unchanged, without podman's layer cache (also a form or JSON field).
    #[serde(default)]
    pub no_cache: bool,
}

/// `architecture`, or its alias `arch`, as the original API sends them.
pub fn arch_of<'a>(architecture: &'a Option<String>, arch: &'a Option<String>) -> Option<&'a str> {
    architecture.as_deref().or(arch.as_deref())
}
