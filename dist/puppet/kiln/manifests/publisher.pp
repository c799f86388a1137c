# @summary The Kiln publisher: package kiln-publisher, /etc/kiln/publisher.yaml, the signing key, kiln-publisher.
#
# The publisher is the only role that holds the signing key: it lives in
# /etc/kiln/publisher (mode 0750, group kiln-publisher, set by the
# package), readable by the service's user kiln-publisher only. Give the
# armored private key as `signing_key` (Sensitive) to have Puppet write it
# there, or put it there by other means and name it in
# `signing_key_file`. Parameters are the settings of `man publisher` /
# examples/publisher.yaml; `settings` adds or overrides any other key. The
# config is checked with `publisher serve --check-config` (which reads
# neither the key nor the store) before it is written.
#
# @param root The publisher's root (store, objects, public/).
# @param signing_key_file The armored private key file.
# @param signing_key The armored private key; undef: Puppet does not write the key file.
# @param passphrase_file The file holding the key's passphrase; undef for a key without one.
# @param passphrase The passphrase; undef: Puppet does not write the passphrase file.
# @param repositories The repositories section: [{ name, format, suite, ... }].
# @param serve The serve section (listen, tls, client_cert_sha256, http_listen, ...).
# @param mirrors The mirrors section: [{ name, dest, password_file }].
# @param log_level trace, debug, info, warn or error.
# @param log_json Log JSON lines.
# @param settings Any other settings, merged over the ones above.
# @param package_ensure The package's ensure.
# @param manage_service Whether Puppet runs and enables kiln-publisher.
class kiln::publisher (
  String[1] $root = '/var/lib/kiln/publisher',
  String[1] $signing_key_file = '/etc/kiln/publisher/signing-key.asc',
  Optional[Sensitive[String[1]]] $signing_key = undef,
  Optional[String[1]] $passphrase_file = undef,
  Optional[Sensitive[String[1]]] $passphrase = undef,
  Array[Hash] $repositories = [],
  Hash $serve = {},
  Array[Hash] $mirrors = [],
  Enum['trace', 'debug', 'info', 'warn', 'error'] $log_level = 'info',
  Boolean $log_json = false,
  Hash $settings = {},
  String[1] $package_ensure = 'installed',
  Boolean $manage_service = true,
) {
  if $passphrase != undef and $passphrase_file == undef {
    fail('kiln::publisher: passphrase is given but passphrase_file is not: name the file to write it to')
  }

  kiln::role { 'publisher':
    settings       => {
      'root'         => $root,
      'log'          => { 'level' => $log_level, 'json' => $log_json },
      'signing'      => { 'key_file' => $signing_key_file, 'passphrase_file' => $passphrase_file },
      'repositories' => $repositories,
      'serve'        => $serve,
      'mirrors'      => $mirrors,
    } + $settings,
    check          => '/usr/bin/publisher serve --check-config --config %',
    service        => 'kiln-publisher',
    package_ensure => $package_ensure,
    manage_service => $manage_service,
    config_group   => 'kiln-publisher',
  }

  $secrets = { $signing_key_file => $signing_key, $passphrase_file => $passphrase }.filter |$path, $secret| {
    $secret != undef
  }
  $secrets.each |$path, $secret| {
    file { $path:
      ensure    => file,
      owner     => 'root',
      group     => 'kiln-publisher',
      mode      => '0640',
      content   => $secret,
      show_diff => false,
      require   => Package['kiln-publisher'],
    }
    if $manage_service {
      File[$path] ~> Service['kiln-publisher']
    }
  }
}
