"""The side-by-side benchmark: kenornir, OpenSSH scp+ssh and Ansible pushing one job to a lab."""
