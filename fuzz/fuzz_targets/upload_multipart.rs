//! The upload path from raw multipart bytes: form reading (with its limits and the file
//! spooled to disk) and the form checks. No input may panic; a refusal is fine.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    })
}

fn tmp() -> &'static std::path::Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| tempfile::tempdir().unwrap()).path()
}

fuzz_target!(|data: &[u8]| {
    let body = bytes::Bytes::copy_from_slice(data);
    // Two chunks, so multer's parser also sees a boundary split across reads.
    let mid = data.len() / 2;
    let chunks = vec![
        Ok::<_, std::io::Error>(body.slice(..mid)),
        Ok(body.slice(mid..)),
    ];
    let stream = futures_util::stream::iter(chunks);
    runtime().block_on(async {
        let form =
            kiln::http::upload::read_form(stream, "B".into(), 64 * 1024, 64, tmp(), None).await;
        if let Ok(form) = form {
            let _ = kiln::service::publish::validate_form(&form);
        }
    });
});
