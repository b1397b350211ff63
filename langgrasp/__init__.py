"""langgrasp: language-guided 2D grasp detection (LGGD) and the robot-side runtime around it.

Subpackages: ``detector`` (model, grasp encoding/decoding, losses, metrics), ``datasets``,
``export``, ``runtime`` (torch-free inference and devices) and ``calibration``. Importing this
package imports nothing heavy; torch is only loaded by the modules that need it.
"""

__version__ = "0.1.0"
