//! `--store` and `--store-required`, shared by `build`, `matrix` and `plan -d`.

use anyhow::Result;
use clap::Args;
use image_builder::build::stage_store::StoreOptions;
use image_builder::build::BuildOptions;
use image_builder::store::StoreUrl;

use super::exit::BadInput;

#[derive(Args, Debug, Clone, Default)]
pub struct StoreArgs {
    /// A stage store shared between machines: oci://HOST[:PORT]/REPO (an OCI registry;
    /// HTTPS, plain HTTP for a loopback host unless written oci+https://) or file:///DIR
    /// (an OCI image layout directory). A dataset stage that misses locally is received
    /// from it when it has the stage's key; a stage built is pushed to it. What a build
    /// starts from and this machine lacks (its input snapshot's stages, the archives it
    /// unpacks) is taken from it first, never built. A store that cannot be used is a
    /// warning, and the stage builds locally. A registry with a private CA: set
    /// SSL_CERT_FILE to a PEM bundle holding it (docs/scaling.md).
    #[arg(long, value_name = "URL")]
    pub store: Option<String>,
    /// Fail when the store cannot be reached or used, instead of building locally.
    #[arg(long, requires = "store")]
    pub store_required: bool,
}

impl StoreArgs {
    /// `opts` with the store these flags name; a malformed URL is bad input (exit 2).
    pub fn apply(&self, opts: BuildOptions) -> Result<BuildOptions> {
        let store = match &self.store {
            None => None,
            Some(text) => Some(StoreOptions {
                url: StoreUrl::parse(text).map_err(|e| BadInput(format!("--store: {e}")))?,
                required: self.store_required,
            }),
        };
        Ok(BuildOptions { store, ..opts })
    }
}
