//! The hardware profile an executor registers on-chain, read from the machine:
//! `cpu:<cores>c <brand>;ram:<GiB>G;gpu:<device>`.

use sysinfo::{CpuRefreshKind, System};

/// The profile of this machine; `device` is the configured device (`cpu` or `cuda:N`).
pub fn profile(device: &str) -> String {
    let mut system = System::new();
    system.refresh_memory();
    system.refresh_cpu_list(CpuRefreshKind::nothing());
    let cores = system.cpus().len();
    let brand = system
        .cpus()
        .first()
        .map(|cpu| cpu.brand().trim().to_owned())
        .unwrap_or_default();
    let ram_gib = system.total_memory() / (1 << 30);
    let gpu = if device == "cpu" { "none" } else { device };
    format!("cpu:{cores}c {brand};ram:{ram_gib}G;gpu:{gpu}")
}

#[cfg(test)]
mod tests {
    #[test]
    fn profile_names_cores_memory_and_device() {
        let profile = super::profile("cpu");
        assert!(profile.starts_with("cpu:"), "{profile}");
        assert!(
            profile.contains(";ram:") && profile.ends_with(";gpu:none"),
            "{profile}"
        );
        let cores: usize = profile["cpu:".len()..]
            .split('c')
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        assert!(cores >= 1, "{profile}");
        assert!(super::profile("cuda:0").ends_with(";gpu:cuda:0"));
    }
}
