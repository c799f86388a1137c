# @summary A Kiln build worker: package kiln-worker, /etc/kiln/worker.yaml, kiln-worker and kiln-containerd.
#
# The worker runs as root (it manages containerd buildroots) beside Kiln's
# own containerd (kiln-containerd.service, config
# /etc/kiln/containerd/config.toml from the package). Parameters are the
# settings of `man worker` / examples/worker.yaml; `settings` adds or
# overrides any other key. The config is checked with `worker run
# --check-config` before it is written.
#
# @param coordinator The coordinator's gRPC address (host:port).
# @param worker_name The worker's name; in production its certificate's common name.
# @param token_file The file holding the worker's bearer token (the coordinator's worker_tokens).
# @param tls The worker's client certificate: { cert, key, ca } file paths.
# @param dev Single-machine mode: plaintext to a loopback coordinator.
# @param labels Labels k => v the worker advertises.
# @param slots Jobs run at once.
# @param work_dir Scratch directory for jobs.
# @param executor containerd (command jobs in buildroots) or shell (on the host).
# @param shutdown_grace How long running jobs may finish when the worker stops.
# @param metrics_listen Address of /metrics and /healthz; undef for none.
# @param log_level trace, debug, info, warn or error.
# @param buildroot The buildroot section (containerd address, namespace, targets, limits).
# @param build The build section (cache_dir, the releases' repositories).
# @param settings Any other settings, merged over the ones above.
# @param package_ensure The package's ensure.
# @param manage_service Whether Puppet runs and enables kiln-worker and kiln-containerd.
class kiln::worker (
  String[1] $coordinator,
  String[1] $worker_name = $facts['networking']['hostname'],
  Optional[String[1]] $token_file = undef,
  Optional[Struct[{ cert => String[1], key => String[1], ca => String[1] }]] $tls = undef,
  Boolean $dev = false,
  Hash[String[1], String] $labels = {},
  Integer[1] $slots = 2,
  String[1] $work_dir = '/var/lib/kiln/worker',
  Enum['containerd', 'shell'] $executor = 'containerd',
  String[1] $shutdown_grace = '5m',
  Optional[String[1]] $metrics_listen = '127.0.0.1:7423',
  Enum['trace', 'debug', 'info', 'warn', 'error'] $log_level = 'info',
  Hash $buildroot = {
    'address'   => '/run/kiln-containerd/containerd.sock',
    'namespace' => 'kiln',
    'state_dir' => '/var/lib/kiln/buildroot',
  },
  Hash $build = {},
  Hash $settings = {},
  String[1] $package_ensure = 'installed',
  Boolean $manage_service = true,
) {
  $base = {
    'coordinator'    => $coordinator,
    'name'           => $worker_name,
    'dev'            => $dev,
    'token_file'     => $token_file,
    'tls'            => $tls,
    'labels'         => $labels,
    'slots'          => $slots,
    'work_dir'       => $work_dir,
    'executor'       => $executor,
    'shutdown_grace' => $shutdown_grace,
    'metrics_listen' => $metrics_listen,
    'log'            => { 'level' => $log_level },
    'buildroot'      => $buildroot,
    'build'          => $build,
  }

  kiln::role { 'worker':
    settings       => $base + $settings,
    check          => '/usr/bin/worker run --check-config --config %',
    service        => 'kiln-worker',
    package_ensure => $package_ensure,
    manage_service => $manage_service,
  }

  if $manage_service {
    service { 'kiln-containerd':
      ensure  => running,
      enable  => true,
      require => Package['kiln-worker'],
      before  => Service['kiln-worker'],
    }
  }
}
