# @summary The Kiln coordinator: package kiln-coordinator, /etc/kiln/coordinator.yaml, kiln-coordinator.
#
# The coordinator runs as the system user kiln (made by the package); the
# config, which holds the workers' tokens, is readable by root and group
# kiln only. Parameters are the settings of `man coordinator` /
# examples/coordinator.yaml; `settings` adds or overrides any other key
# (e.g. gerrit). The config is checked with `coordinator serve
# --check-config` before it is written. The same package is the command
# line client Jenkins calls (/usr/bin/coordinator).
#
# @param listen gRPC address for clients and workers.
# @param http_listen Address of /metrics, /healthz, /logs/ID and the web pages.
# @param public_url How people reach http_listen (https:// outside dev mode).
# @param state_dir SQLite database, logs and artifacts.
# @param dev Single-machine mode: plaintext on loopback only.
# @param tls The coordinator's certificate: { cert, key, ca } file paths, readable by user kiln.
# @param worker_tokens One bearer token per worker name.
# @param releases The releases section: name => { deb_suffix, rpm_suffix, targets, ... }.
# @param publisher The publisher section ({ address, tls, repository, retry_interval }); undef for none.
# @param queue_timeout How long a job may wait for a worker (0: never).
# @param log_level trace, debug, info, warn or error.
# @param log_json Log JSON lines.
# @param settings Any other settings, merged over the ones above.
# @param package_ensure The package's ensure.
# @param manage_service Whether Puppet runs and enables kiln-coordinator.
class kiln::coordinator (
  String[1] $listen = '0.0.0.0:7420',
  String[1] $http_listen = '0.0.0.0:7421',
  Optional[String[1]] $public_url = undef,
  String[1] $state_dir = '/var/lib/kiln/coordinator',
  Boolean $dev = false,
  Optional[Struct[{ cert => String[1], key => String[1], ca => String[1] }]] $tls = undef,
  Hash[String[1], String[1]] $worker_tokens = {},
  Hash[String[1], Hash] $releases = {},
  Optional[Hash] $publisher = undef,
  String[1] $queue_timeout = '24h',
  Enum['trace', 'debug', 'info', 'warn', 'error'] $log_level = 'info',
  Boolean $log_json = true,
  Hash $settings = {},
  String[1] $package_ensure = 'installed',
  Boolean $manage_service = true,
) {
  $base = {
    'listen'        => $listen,
    'http_listen'   => $http_listen,
    'public_url'    => $public_url,
    'state_dir'     => $state_dir,
    'dev'           => $dev,
    'tls'           => $tls,
    'worker_tokens' => $worker_tokens,
    'queue_timeout' => $queue_timeout,
    'log'           => { 'level' => $log_level, 'json' => $log_json },
    'releases'      => $releases,
    'publisher'     => $publisher,
  }

  kiln::role { 'coordinator':
    settings       => $base + $settings,
    check          => '/usr/bin/coordinator serve --check-config --config %',
    service        => 'kiln-coordinator',
    package_ensure => $package_ensure,
    manage_service => $manage_service,
    config_group   => 'kiln',
  }
}
