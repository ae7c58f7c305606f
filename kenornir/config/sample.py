"""The commented sample config that `kenornir gen-config` prints."""

# Upstream's fields in upstream's order; kenornir's extensions are commented out. Values the user
# must fill are <PLACEHOLDERS>, which validation rejects by name until they are replaced.
SAMPLE_CONFIG = """\
# keadm batch config, as read by `keadm batch -c FILE` and by `kenornir run FILE`.
# Replace every <PLACEHOLDER>; `kenornir validate FILE` names the ones left.
# Commented-out keys marked [kenornir] are kenornir extensions; keadm batch does not know them.
keadm:
  download:
    enable: true                # <Optional> false: use offlinePackageDir instead. Default true.
    # url: https://mirror.example.com/kubeedge/v1.20.0
                                # <Optional> fetch {url}/keadm-{version}-linux-{arch}.tar.gz from
                                # here. Default: the GitHub release of keadmVersion.
    # verifyChecksum: true      # [kenornir] check each tarball's published sha512. Default true.
  keadmVersion: "<KEADM-VERSION>"  # <Required> the version of your cloudcore, e.g. v1.20.0
  archGroup:                    # <Required> keadm builds to prepare: amd64, arm64 and/or arm
    - amd64
  # offlinePackageDir: ./keadm-packages
                                # <Optional> with download.enable false: holds
                                # <arch>/keadm-<version>-linux-<arch>.tar.gz
  cmdTplArgs:                   # <Optional> values for the {{.name}} placeholders in keadmCmd
    cmd: join
    cloudcore: "<CLOUDCORE-IP:PORT>"  # cloudcore's address, e.g. 192.168.1.2:10000
    token: "<TOKEN>"            # `keadm gettoken` on the cloud side, or "${KEADM_TOKEN}" to read
                                # it from the environment [kenornir]
  # keadmBinDir: /usr/local/bin # <Optional> keadm is already in this directory on every node:
                                # nothing is uploaded and keadm runs there
  # preRun: [preflight.sh]      # [kenornir] local scripts run on every node before keadm
  # postRun: [verify.sh]        # [kenornir] local scripts run on every node after keadm succeeded
nodes:
  - nodeName: edge-node-1       # <Required> unique; names this node's log file
    arch: amd64                 # <Optional> amd64/arm64/arm; detected with `uname -m` anyway
    # <Required> the keadm command without `keadm`, on one line (`>-` folds these two);
    # placeholders come from cmdTplArgs; [kenornir] also {{.nodeName}}, {{.ip}}, {{.labels.x}}
    keadmCmd: >-
      {{.cmd}} --cloudcore-ipport={{.cloudcore}}
      --edgenode-name=edge-node-1 --token={{.token}}
    # copyFrom: ./edge-files    # <Optional> every file in this directory is uploaded next to
                                # keadm (no subdirectories)
    # keadmBinDir: /usr/local/bin  # <Optional> this node already has keadm here
    # labels: {site: north}     # [kenornir] select nodes with --label site=north
    # preRun: [preflight.sh]    # [kenornir] this node's own scripts, after the global ones
    # postRun: [verify.sh]
    ssh:
      ip: "<EDGE-NODE-IP>"      # <Required> the node's IP address or host name
      username: root            # <Required> root, or another user with sudo: true
      port: 22                  # <Optional> default 22
      # sudo: true              # [kenornir] run commands through sudo (non-root username)
      # proxyJump: ops@192.0.2.1  # [kenornir] jump hosts, outermost first (user@host[:port],...)
      auth:                     # [kenornir] leave auth out to log in with your ssh-agent's keys
        type: password          # <Required> password or privateKey
        passwordAuth:
          password: "<PASSWORD>"  # or "${EDGE_PASSWORD}" to read it from the environment [kenornir]
        # privateKeyAuth:       # with type: privateKey, instead of passwordAuth
        #   privateKeyPath: ~/.ssh/id_ed25519
        #   passphrase: "${KEY_PASSPHRASE}"  # [kenornir] for an encrypted key
maxRunNum: 5                    # <Optional> nodes processed at once; 0 or unset means 5
# transfer: auto                # [kenornir] how files reach nodes: auto (one exec stream where
#                               # the node's userland allows, else SFTP), stream, or sftp
"""
