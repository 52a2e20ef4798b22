"""Project provisioning: project.yml -> root CA, certificates and signed startup kits.

Importable with no front end (no flshell, textual or prompt_toolkit); grpc only on demand.
"""

from provisioning.builder import ProvisionError, provision
from provisioning.identity import Identity, IdentityError, identity_from_cert, peer_identity
from provisioning.kit import Kit, KitError, load_kit, verify_kit
from provisioning.policy import DEFAULT_POLICY, Policy, PolicyError, load_policy
from provisioning.project import (Participant, Project, ProjectError, load_project, parse_project,
                                  project_from_dict)

__all__ = [
    "DEFAULT_POLICY", "Identity", "IdentityError", "Kit", "KitError", "Participant", "Policy",
    "PolicyError", "Project", "ProjectError", "ProvisionError", "identity_from_cert", "load_kit",
    "load_policy", "load_project", "parse_project", "peer_identity", "project_from_dict",
    "provision", "verify_kit",
]
