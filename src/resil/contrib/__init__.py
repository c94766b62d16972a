"""The public face of resil inside web frameworks: ``resil.contrib.flask`` and
``resil.contrib.django``. The automatic integrations install these same objects."""
