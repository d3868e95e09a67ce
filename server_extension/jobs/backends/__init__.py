"""Where jobs run: a class named in configuration (``JobsService.backend_class``)."""
