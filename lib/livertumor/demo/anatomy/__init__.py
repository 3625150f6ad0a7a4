"""Shapes and tissues of the synthetic abdominal CT cases of :mod:`livertumor.demo.generator`.

Everything here is built in physical millimetres from smooth implicit shapes (approximate
signed distances, negative inside), sampled on the case's voxel grid, so shapes are continuous
across slices whatever the slice thickness. One module per organ group:

==============  ===========================================================================
canvas          the voxel grid in mm and the HU / label volumes being painted
shapes, noise   implicit primitives and their combinations; smooth random fields
tubes           tapered tubes, branching trees, cylinders along z
body            body outline, skin, fat and muscle wall, diaphragm surface, CT table
skeleton        spine and ribs
vessels         aorta, IVC, portal venous system, SMA, crura and psoas
thorax          lung bases and their vessels, heart
gut             oesophagus, stomach, duodenum, colon, small bowel, mesenteric vessels
organs          kidneys, spleen, gallbladder, pancreas
liver           liver shape, portal and hepatic veins
tumors          liver tumors
tissues         tissue attenuation (HU)
painter         :class:`Anatomy`: draws every part once, paints them in order
==============  ===========================================================================

Anatomical coordinates (mm), used throughout:

* ``x`` grows towards the patient's **left** (canonical columns), 0 on the body's midline;
* ``y`` grows towards **posterior** (canonical rows), 0 at the body's centre;
* ``z`` grows towards the **head** (canonical slices), 0 at the top of the right diaphragm dome.

Arrays built here are in ``(z, y, x)`` order (slices, rows, columns) so that each axial slice
is contiguous; :mod:`livertumor.demo.generator` transposes the result to the canonical
``(rows, columns, slices)`` order.
"""

from .canvas import F32, Canvas, Grid
from .painter import Anatomy

__all__ = ["F32", "Anatomy", "Canvas", "Grid"]
